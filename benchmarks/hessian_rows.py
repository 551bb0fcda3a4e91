"""Time of the full Hessian of the architecture loss w.r.t. α (R-DARTS's eigenvalue diagnostic) by how
many of its rows one batched double-backward pass computes.

    python benchmarks/hessian_rows.py --channels 4 --layers 3 --batch-size 8 --image-size 16 --rows 1 16 56 224

One JSON line per ``rows_per_pass``: seconds for the whole Hessian (one run each, in the
order given), the peak resident memory of the process so far (MB), and whether the matrix
equals the first setting's bit for bit. ``--rows 1`` is one pass per row.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from darts_lightning import DartsSpace
from darts_lightning.differentiable.diagnostics import architecture_hessian
from darts_lightning.spaces.mixing import SoftmaxRelaxation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 16, 56, 224])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    space = DartsSpace(channels=args.channels, layers=args.layers)
    net = space.build_supernet(SoftmaxRelaxation(), in_channels=3, num_classes=10, image_size=args.image_size)
    net = net.to(args.device)
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=args.device)
    y = torch.randint(10, (args.batch_size,), device=args.device)
    reference = None
    for rows in args.rows:
        if args.device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        hessian = architecture_hessian(net, x, y, weight_decay=1e-3, rows_per_pass=rows)
        if args.device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        reference = hessian if reference is None else reference
        print(json.dumps({"rows_per_pass": rows, "entries": hessian.shape[0], "seconds": round(seconds, 2),
                          "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                          "equal_to_first": bool(torch.equal(hessian, reference))}), flush=True)


if __name__ == "__main__":
    main()
