"""Attribution methods of captum-baselines."""
