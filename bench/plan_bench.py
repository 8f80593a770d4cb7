"""How long `llmcloud plan --provider aws` takes, as a ratio to importing the pulumi-aws
modules the plan uses (goal: <= 1.3). Importing those modules is the floor any plan pays;
the ratio shows what running the program under the mocks, the checks and the cost add.
"The modules it uses" are exactly the pulumi-aws modules a plan leaves loaded: those of the
resources it declares and of the lookups (invokes) it makes.

Both are measured cold, in fresh interpreters, side by side and interleaved; the ratio is
of the fastest runs (noise on a shared machine only ever adds time), medians are shown too:
    python bench/plan_bench.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import types

SPEC = {"provider": "aws", "region": "us-east-1", "compute": {"instance_type": "g6.xlarge"}}

IMPORT_ONLY = """
import importlib, json, sys, time, warnings
warnings.simplefilter("ignore")
start = time.perf_counter()
import pulumi, pulumi_aws
for module in json.loads(sys.argv[1]):
    importlib.import_module(module)
print(time.perf_counter() - start)
"""

PLAN = """
import json, sys, time
start = time.perf_counter()
from llmcloud.stacks.plan import run_plan
from llmcloud.stacks.spec import DeploymentSpec
doc = run_plan(DeploymentSpec.model_validate(json.loads(sys.argv[1])), "bench")
assert all(c["passed"] for c in doc["checks"]) and doc["cost"]["hourly_max"] > 0
print(time.perf_counter() - start)
"""


def timed(code: str, arg: str) -> float:
    out = subprocess.run([sys.executable, "-c", code, arg], check=True, capture_output=True,
                         text=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from llmcloud.stacks.plan import run_plan
    from llmcloud.stacks.spec import DeploymentSpec

    doc = run_plan(DeploymentSpec.model_validate(SPEC), "bench")
    # pulumi-aws registers every module lazily; the loaded ones are plain modules
    modules = json.dumps(sorted(name for name, module in sys.modules.items()
                                if name.startswith("pulumi_aws.")
                                and type(module) is types.ModuleType))
    imports, plans = [], []
    for _ in range(args.runs):
        imports.append(timed(IMPORT_ONLY, modules))
        plans.append(timed(PLAN, json.dumps(SPEC)))
    imp, plan = min(imports), min(plans)
    print(json.dumps({
        "resources": len(doc["resources"]), "runs": args.runs,
        "import_pulumi_aws_s": round(imp, 3), "plan_s": round(plan, 3),
        "ratio": round(plan / imp, 2), "goal": 1.3,
        "median_ratio": round(statistics.median(plans) / statistics.median(imports), 2),
    }))


if __name__ == "__main__":
    main()
