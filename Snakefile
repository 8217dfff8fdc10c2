# SPADE on faces: FFHQ -> BiSeNet label maps -> SPADE and baselines -> synthesis -> metrics.
# All logic lives in the `pipeline` package; each rule calls one `python -m pipeline.<stage>` CLI.
import json
import re
import shlex
import sys
from pathlib import Path

sys.path.insert(0, workflow.basedir)
# Every job (local, in a conda env, or on a cluster node) imports the package from this checkout.
shell.prefix(f"set -euo pipefail; export PYTHONPATH={shlex.quote(workflow.basedir)}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; ")

from pipeline import launch
from pipeline.config import INCEPTION_KEYS, DataConfig, ModelConfig, replicate_names, section_json, validate
from pipeline.layout import DEMO_PARSER_WEIGHTS, PARSER_WEIGHTS, REAL_ROW, RESULTS
from pipeline.models.architecture import NETWORK_FORMAT
from pipeline.shards import shard_count


# Every key's default; a run's own settings come with --configfile, over these.
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
