r"""Noisy Linear Imputation (NLI), the removal operator of ROAD.

Rong, Leemann, Borisov, Kasneci & Kasneci, "A Consistent and Efficient
Evaluation Strategy for Attribution Methods" (Remove And Debias, ROAD), ICML
2022, https://arxiv.org/abs/2202.00449

Replacing removed pixels by a constant leaves the *shape* of the removed set in
the image, and a model can read the class from that shape: the curve then
ranks methods by how their masks look.  NLI instead fills every removed pixel
``i`` with the weighted mean of its eight neighbors,

.. math::

    x_i = \frac{\sum_{j \in N(i)} w_{ij} x_j}{\sum_{j \in N(i)} w_{ij}},
    \qquad w_{ij} = 1/6 \text{ (edge neighbors)}, \;
    1/12 \text{ (diagonal neighbors)},

where ``N(i)`` are the neighbors inside the image and removed neighbors are
unknowns of the same equations.  The removed pixels of one image and channel
thus solve a sparse linear system: a discrete Laplace equation whose boundary
values are the kept pixels.  Gaussian noise of standard deviation ``noise_std``
is then added to the removed pixels (the authors' code adds ``0.01`` to images
in ``[0, 1]``).  Channels are imputed independently, with the same mask.

The system is symmetric positive definite on every connected region of removed
pixels that touches a kept pixel, and every (image, channel) system of a batch
is solved at once, with tensor operations on the whole batch, by conjugate
gradients preconditioned with a multigrid V-cycle (5 to 20 iterations whatever
the image size).  The only region that touches no kept pixel is a whole image
with every pixel removed; it has no value to interpolate from and gets the
minimum-norm solution, 0, plus noise.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

from .._validation import (
    check_finite,
    check_generator,
    check_nonnegative,
    check_optional_positive_int,
    check_tensor,
)

#: Weights of the four edge and the four diagonal neighbors (the ROAD paper's).
EDGE_WEIGHT = 1 / 6
DIAGONAL_WEIGHT = 1 / 12


def neighbor_sum(values: Tensor, scale: Tensor | float = DIAGONAL_WEIGHT) -> Tensor:
    """``sum_j w_ij values_j`` over the in-image neighbors ``j`` of every pixel.

    ``values`` is ``(B, H, W)``; pixels outside the image count as 0.  The
    stencil ``[[1, 2, 1], [2, 0, 2], [1, 2, 1]] / 12`` (edge neighbors 1/6,
    diagonal ones 1/12) is the separable ``[1, 2, 1] x [1, 2, 1]`` minus its
    center, which needs two 1-D passes instead of eight shifted sums.
    ``scale`` replaces the final ``1 / 12`` (e.g. by ``mask / 12``, saving a
    pass over the result).
    """
    height, width = values.shape[-2:]
    padded = F.pad(values, (1, 1, 1, 1))
    vertical = torch.add(padded[..., :height, :], padded[..., 2:, :])
    vertical.add_(padded[..., 1 : height + 1, :], alpha=2)
    total = torch.add(vertical[..., :width], vertical[..., 2:])
    total.add_(vertical[..., 1 : width + 1], alpha=2)
    return total.sub_(values, alpha=4).mul_(scale)


def noisy_linear_imputation(
    inputs: Tensor,
    removed: Tensor,
    noise_std: float = 0.01,
    *,
    generator: torch.Generator | None = None,
    tol: float = 1e-5,
    max_iter: int | None = None,
) -> Tensor:
    r"""Replaces the ``removed`` pixels of ``inputs`` by Noisy Linear Imputation.

    Args:
        inputs: ``(N, C, H, W)`` images.
        removed: Boolean mask of the pixels to replace: ``(N, H, W)`` or
            ``(N, 1, H, W)`` (every channel of a pixel, as in ROAD), or
            ``(N, C, H, W)`` (per channel).
        noise_std: Standard deviation of the Gaussian noise added to each
            imputed value, in the units of ``inputs`` (the authors' default is
            0.01 for images in ``[0, 1]``); 0 gives the plain linear imputation.
        generator: Source of the noise (the global RNG is never used).
        tol: The solver stops for an (image, channel) system when the residual
            ``r = b - A u`` of its equations satisfies
            ``||r||_2 <= tol * ||b||_2``; ``r_i / sum_j w_ij`` is how far the
            imputed pixel ``i`` is from the weighted mean of its neighbors.
            With the default 1e-5 and float32 images in ``[0, 1]``, the imputed
            values were within 2e-5 of a direct solve when 30% of a 112x112
            image was removed and within 3.2e-4 at 99% (float32 rounding, not
            ``tol``, limits this: 1e-6 gives the same); in float64, a smaller
            ``tol`` gives proportionally more accurate values.
        max_iter: Conjugate-gradient iterations at most (default 200; 5-20
            are typical).  A system still above ``tol`` after that raises
            a ``RuntimeWarning`` naming how many.

    Returns:
        A tensor shaped like ``inputs``: kept pixels unchanged, removed ones
        imputed.

    Examples::

        >>> removed = torch.rand(8, 32, 32) < 0.3
        >>> imputed = noisy_linear_imputation(images, removed, 0.01, generator=g)
    """
    x = check_tensor("inputs", inputs)
    if x.dim() != 4 or not x.is_floating_point():
        raise ValueError(
            "`inputs` must be floating-point (N, C, H, W) images, "
            f"got {x.dtype} of shape {tuple(x.shape)}"
        )
    check_finite("inputs", x)
    mask = _check_mask(removed, x)
    noise_std = check_nonnegative("noise_std", noise_std)
    tol = check_nonnegative("tol", tol)
    check_generator("generator", generator)
    height, width = x.shape[2:]
    limit = check_optional_positive_int("max_iter", max_iter)
    limit = limit if limit is not None else 200

    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    n, c = x.shape[:2]
    values = x.to(dtype).reshape(n * c, height, width)
    unknown = mask.expand(n, c, height, width).reshape(n * c, height, width)
    solution = solve_imputation(values, unknown, tol, limit)
    if noise_std > 0:
        device = generator.device if generator is not None else x.device
        noise = torch.randn(solution.shape, generator=generator, device=device)
        solution.add_(noise.to(device=x.device, dtype=dtype), alpha=noise_std)
    imputed = torch.where(unknown, solution, values).reshape(n, c, height, width)
    return imputed.to(x.dtype)


def _check_mask(removed: Tensor, x: Tensor) -> Tensor:
    """``removed`` as a ``(N, 1 or C, H, W)`` bool tensor on ``x``'s device."""
    mask = check_tensor("removed", removed)
    n, c, height, width = x.shape
    if mask.shape == (n, height, width):
        mask = mask.unsqueeze(1)
    if mask.shape not in ((n, 1, height, width), (n, c, height, width)):
        raise ValueError(
            f"`removed` must be (N, H, W), (N, 1, H, W) or (N, C, H, W) for inputs of "
            f"shape {tuple(x.shape)}, got {tuple(mask.shape)}"
        )
    if mask.dtype != torch.bool:
        raise TypeError(f"`removed` must be a bool tensor, got {mask.dtype}")
    return mask.to(x.device)


def solve_imputation(
    values: Tensor, unknown: Tensor, tol: float, max_iter: int
) -> Tensor:
    r"""The noise-free imputed value of every pixel marked ``unknown``.

    ``values`` and ``unknown`` are ``(B, H, W)``, one system per leading index;
    the result is ``(B, H, W)`` with 0 at kept pixels.  The system of each image
    and channel, on its unknown pixels, is

    .. math::

        d_i u_i - \sum_{j \text{ removed}} w_{ij} u_j
        = \sum_{j \text{ kept}} w_{ij} x_j, \qquad d_i = \sum_j w_{ij},

    solved by conjugate gradients preconditioned with one multigrid V-cycle
    (:class:`_Multigrid`).  A system stops updating once it meets ``tol``, so
    its result does not depend on the rest of the batch.
    """
    grid = _Multigrid(unknown.to(values.dtype))
    m = grid.masks[0]
    b = neighbor_sum(values * (1 - m), grid.weights[0])
    b_norm = _norm(b)
    # A system with b = 0 (every pixel removed, or only zeros around the hole)
    # has the solution 0.
    going = b_norm > 0
    u = torch.zeros_like(b)
    r = b.clone()
    z = grid.precondition(r)
    p = z.clone()
    rz = _dot(r, z)
    iterations = 0
    while bool(going.any()) and iterations < max_iter:
        iterations += 1
        q = grid.operator(0, p)
        pq = _dot(p, q)
        alpha = torch.where(going & (pq > 0), rz / torch.where(pq > 0, pq, 1), 0)
        u.addcmul_(alpha[:, None, None], p)
        r.addcmul_(alpha[:, None, None], q, value=-1)
        going &= _norm(r) > tol * b_norm
        z = grid.precondition(r)
        rz_next = _dot(r, z)
        beta = torch.where(rz > 0, rz_next / torch.where(rz > 0, rz, 1), 0)
        p = torch.addcmul(z, beta[:, None, None], p)
        rz = rz_next
    stuck = int(going.sum())
    if stuck:
        warnings.warn(
            f"noisy linear imputation: {stuck} of {len(values)} (image, channel) "
            f"systems did not reach tol={tol} in {max_iter} iterations; pass a "
            "larger max_iter",
            RuntimeWarning,
            stacklevel=3,
        )
    return u


class _Multigrid:
    """A symmetric multigrid V-cycle for the imputation systems of a batch.

    Plain Jacobi-preconditioned CG needs about as many iterations as the
    largest removed region is wide (hundreds on a 112x112 image with a removed
    blob); one V-cycle as the preconditioner brings that to 5-20 whatever the
    size (measured: 6 to 20 at 112x112, for scattered and blob-shaped
    removed sets from 10% to 99% of the pixels).  Level ``l + 1`` halves the
    grid; its unknowns are the 2x2 blocks whose four pixels are all unknown,
    and its operator is the same stencil.  Restriction sums a block's four
    residuals, which matches the coarse stencil's scale: on a smooth ``u`` the
    stencil gives about ``-h^2 c Laplacian(u)`` at spacing ``h``, and a coarse
    pixel covers ``(2h)^2``.  Prolongation copies a coarse value to the
    block's pixels (the transpose of restriction), and one damped Jacobi sweep
    smooths before and after the coarse correction, which keeps the
    preconditioner symmetric positive definite as CG requires.  The number of
    levels depends on the image size only (halving while both sides exceed
    :attr:`coarsest`), so a system's iterates do not depend on the other
    systems of the batch.
    """

    #: Jacobi damping.  ``D^-1 A`` has eigenvalues in (0, 2) (Gershgorin; the
    #: stencil's graph has triangles, so 2 is not reached) and up to 4/3 away
    #: from the borders, so a full step keeps the smoother a contraction.
    damping = 1.0

    #: No grid is halved once a side is this short: on an 8x8 grid plain
    #: Jacobi-preconditioned CG converges in a few more iterations that cost a
    #: third as much (measured: twice as fast on the 8x8 digits).
    coarsest = 8

    def __init__(self, unknown: Tensor) -> None:
        # Per level: the unknowns' diagonal d_i, the stencil's weights on them
        # (mask / 12), and the damped Jacobi step (damping * mask / d_i).
        self.masks: list[Tensor] = []
        self.diagonal: list[Tensor] = []
        self.weights: list[Tensor] = []
        self.smoother: list[Tensor] = []
        mask = unknown
        while True:
            height, width = mask.shape[-2:]
            ones = torch.ones(1, height, width, dtype=mask.dtype, device=mask.device)
            inside = neighbor_sum(ones)
            self.masks.append(mask)
            self.diagonal.append(mask * inside)
            self.weights.append(mask * DIAGONAL_WEIGHT)
            # a 1x1 image has no neighbors; its pixel keeps the value 0
            step = torch.where(inside > 0, mask / inside, 0) * self.damping
            self.smoother.append(step)
            if min(height, width) <= self.coarsest:
                break
            mask = (self.restrict(mask) == 4).to(mask.dtype)

    @staticmethod
    def restrict(values: Tensor) -> Tensor:
        """Sums of the 2x2 blocks (the grid padded with zeros to even sides)."""
        height, width = values.shape[-2:]
        if height % 2 or width % 2:
            values = F.pad(values, (0, width % 2, 0, height % 2))
        # rows first (contiguous halves of each plane), then columns
        pairs = values[..., 0::2, :] + values[..., 1::2, :]
        return pairs[..., 0::2] + pairs[..., 1::2]

    def operator(self, level: int, u: Tensor) -> Tensor:
        """``A u`` at ``level`` for ``u`` that is 0 off the level's unknowns."""
        return torch.mul(u, self.diagonal[level]).sub_(
            neighbor_sum(u, self.weights[level])
        )

    def precondition(self, residual: Tensor, level: int = 0) -> Tensor:
        """One V-cycle from ``level`` down: an approximation of ``A^-1 residual``."""
        step = self.smoother[level]
        x = step * residual
        if level + 1 < len(self.masks):
            coarse = self.restrict(residual - self.operator(level, x))
            coarse.mul_(self.masks[level + 1])
            correction = self.precondition(coarse, level + 1)
            n, rows, cols = correction.shape
            fine = correction[:, :, None, :, None].expand(n, rows, 2, cols, 2)
            height, width = residual.shape[-2:]
            x += fine.reshape(n, 2 * rows, 2 * cols)[:, :height, :width]
        return x.addcmul_(step, residual - self.operator(level, x))


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-system inner products, in one pass."""
    return torch.linalg.vecdot(a.flatten(1), b.flatten(1))


def _norm(a: Tensor) -> Tensor:
    return torch.linalg.vector_norm(a, dim=(-2, -1))
