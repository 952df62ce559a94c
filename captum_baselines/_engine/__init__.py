"""The path engine shared by every path method, metric and plot."""
