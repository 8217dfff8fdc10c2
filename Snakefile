# SPADE on faces: FFHQ -> BiSeNet label maps -> SPADE and baselines -> synthesis -> metrics.
# All logic lives in the `pipeline` package; each rule calls one `python -m pipeline.<stage>` CLI.
import json
import shlex
import sys
from pathlib import Path

sys.path.insert(0, workflow.basedir)
# Every job (local, in a conda env, or on a cluster node) imports the package from this checkout.
shell.prefix(f"set -euo pipefail; export PYTHONPATH={shlex.quote(workflow.basedir)}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; ")

from pipeline.config import NETWORK_FORMAT, REAL_ROW, ModelConfig, section_json, validate
from pipeline.shards import shard_count


# The documented defaults; a run directory's own settings come with --configfile.
configfile: Path(workflow.basedir) / "config.yaml"


validate(config)


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/parse.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"


report: "workflow/report/workflow.rst"


rule all:
    input:
        rules.table.output,
        rules.parse_preview.output,
