"""How long `llmcloud plan --provider aws` takes, as a ratio to importing the pulumi-aws
modules the plan uses (goal: <= 1.3). Importing those modules is the floor any plan pays;
the ratio shows what running the program under the mocks, the checks and the cost add.
"The modules it uses" are exactly the pulumi-aws modules a plan leaves loaded: the packages
of the resources it declares and of the lookups (invokes) it makes, each of which loads all
of its modules. The benchmark checks that the floor loads that same set, no more, no less.

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
import json, sys, time, types, warnings
warnings.simplefilter("ignore")
start = time.perf_counter()
import pulumi, pulumi_aws
for package in json.loads(sys.argv[1]):
    # any attribute but the introspection ones loads a lazily registered package, as a plan does
    getattr(getattr(pulumi_aws, package), "__all__", None)
print(time.perf_counter() - start)
loaded = sorted(name for name, module in sys.modules.items()
                if name.startswith("pulumi_aws.") and type(module) is types.ModuleType)
print(json.dumps(loaded))
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


def run(code: str, arg: str) -> str:
    return subprocess.run([sys.executable, "-c", code, arg], check=True, capture_output=True,
                          text=True).stdout.strip()


def timed(code: str, arg: str) -> float:
    return float(run(code, arg).splitlines()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from llmcloud.stacks.plan import run_plan
    from llmcloud.stacks.spec import DeploymentSpec

    doc = run_plan(DeploymentSpec.model_validate(SPEC), "bench")
    # pulumi-aws registers every module lazily; the loaded ones are plain modules, and a
    # package, once loaded, loads all of its modules
    loaded = sorted(name for name, module in sys.modules.items()
                    if name.startswith("pulumi_aws.") and type(module) is types.ModuleType)
    packages = json.dumps(sorted({name.split(".")[1] for name in loaded if name.count(".") == 1
                                  and hasattr(sys.modules[name], "__path__")}))
    floor_loads = json.loads(run(IMPORT_ONLY, packages).splitlines()[-1])
    if floor_loads != loaded:  # the floor must load what a plan loads, no more, no less
        raise SystemExit(f"the import floor loads other modules than the plan: "
                         f"{sorted(set(floor_loads) ^ set(loaded))[:10]}")
    imports, plans = [], []
    for _ in range(args.runs):
        imports.append(timed(IMPORT_ONLY, packages))
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
