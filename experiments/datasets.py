"""List every dataset vqgraph knows: where it was found (or why not) and its figures.

    python -m experiments.datasets [--data-root DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys

from vqgraph.data import KNOWN_DATASETS, dataset_info, resolve_data_roots


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.datasets", description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None, help="data root, or several separated by ':' (default: $VQGRAPH_DATA, else ./datasets)")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.add_argument("names", nargs="*", help="datasets to describe (default: all known)")
    args = parser.parse_args(argv)
    names = args.names or list(KNOWN_DATASETS)
    try:
        infos = [dataset_info(name, args.data_root) for name in names]
    except KeyError as err:
        parser.error(err.args[0])
    if args.json:
        json.dump(infos, sys.stdout, indent=2)
        print()
        return 0
    print(f"data root: {', '.join(map(str, resolve_data_roots(args.data_root)))}")
    header = f"{'name':<14} {'nodes':>9} {'edges':>10} {'feats':>6} {'classes':>7}  {'split (train/val/test)':<24} where"
    print(header)
    print("-" * len(header))
    for info in infos:
        if info["available"]:
            sizes = "/".join(str(v) for v in info["split_sizes"].values())
            fixed = f" [{info['num_fixed_splits']} fixed]" if info["num_fixed_splits"] else ""
            print(
                f"{info['name']:<14} {info['num_nodes']:>9} {info['num_edges']:>10} {info['num_features']:>6} "
                f"{info['num_classes']:>7}  {sizes + fixed:<24} {info['path']}"
            )
        else:
            reason = info["reason"].split(". Expected")[0]
            print(f"{info['name']:<14} {'missing':>9}  {reason}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
