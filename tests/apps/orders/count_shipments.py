"""Print one JSON line per shipment made: {"job": order, "effect": "shipped"} (the harness's [effects])."""

import json
import sys
from pathlib import Path

folder = Path(sys.argv[1])
for f in sorted(folder.glob("*.shipment")) if folder.is_dir() else []:
    for _ in f.read_text().splitlines():
        print(json.dumps({"job": f.name.removesuffix(".shipment"), "effect": "shipped"}))
