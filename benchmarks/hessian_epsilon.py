"""How far the finite-difference second-order estimate is from the exact one, per ε.

    python benchmarks/hessian_epsilon.py --channels 4 --layers 3 --image-size 8 --seeds 5

On a small supernet in double precision, with a momentum buffer from one real SGD step, compares the
finite-difference estimate (ε = epsilon / ‖∇w' L_val‖, DARTS eq. 8) with the exact one (double
backward, which the tests check against autograd through the unrolled step). Prints one JSON line per
epsilon: median / mean / min / max cosine similarity and relative error over the seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch
import torch.nn.functional as F

from darts_lightning import DartsSpace, SecondOrderGradient
from darts_lightning.spaces.mixing import SoftmaxRelaxation


def one_seed(seed: int, args) -> dict[float, tuple[float, float]]:
    torch.manual_seed(seed)
    space = DartsSpace(channels=args.channels, layers=args.layers)
    net = space.build_supernet(SoftmaxRelaxation(), in_channels=1, num_classes=10, image_size=args.image_size).double()
    optimizer = torch.optim.SGD(net.weight_parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    batch = lambda: (torch.randn(args.batch_size, 1, args.image_size, args.image_size, dtype=torch.float64),  # noqa: E731
                     torch.randint(10, (args.batch_size,)))
    x, y = batch()
    F.cross_entropy(net(x), y).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    for alpha in net.arch_parameters():
        alpha.grad = None
    train, val = batch(), batch()
    exact = torch.cat([g.flatten() for g in SecondOrderGradient("exact").estimate(net, val, train, optimizer).grads])
    out = {}
    for eps in args.epsilons:
        got = torch.cat([g.flatten() for g in SecondOrderGradient(epsilon=eps).estimate(net, val, train, optimizer).grads])
        out[eps] = (F.cosine_similarity(got, exact, dim=0).item(), ((got - exact).norm() / exact.norm()).item())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1e-2, 1e-3, 1e-4, 1e-6])
    args = parser.parse_args()
    results = [one_seed(seed, args) for seed in range(args.seeds)]
    for eps in args.epsilons:
        cos = [r[eps][0] for r in results]
        rel = [r[eps][1] for r in results]
        print(json.dumps({
            "epsilon": eps, "channels": args.channels, "layers": args.layers, "image_size": args.image_size,
            "dtype": "float64", "seeds": args.seeds,
            "cosine_median": round(statistics.median(cos), 4), "cosine_mean": round(statistics.mean(cos), 4),
            "cosine_min": round(min(cos), 4), "cosine_max": round(max(cos), 4),
            "relative_error_median": float(f"{statistics.median(rel):.3g}"),
            "relative_error_mean": float(f"{statistics.mean(rel):.3g}"), "relative_error_max": float(f"{max(rel):.3g}"),
        }))


if __name__ == "__main__":
    main()
