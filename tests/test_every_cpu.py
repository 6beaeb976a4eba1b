"""Every CPU a user may have: the experiments' tests pass again with oneDNN and ATen limited to AVX2, as on an
x86-64 CPU without AVX-512 or native bfloat16 (where ``precision: auto`` must resolve to float32, and oneDNN has no
bfloat16 LSTM). The whole suite passes that way too (run it with the same two variables set); CI runs this part of
it a second time that way, as part of the one test command.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
EXPERIMENTS = ["tests/experiments", "tests/cli/test_experiments.py", "tests/cli/test_generate.py"]


@pytest.mark.slow
def test_the_experiments_pass_on_an_avx2_only_cpu(data_dir):
    if all(os.environ.get(name) == value for name, value in AVX2.items()):
        pytest.skip("this whole session runs with oneDNN and ATen limited to AVX2 already")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow",
                             *EXPERIMENTS], cwd=REPO, env={**os.environ, **AVX2, "CADENCE_DATA": str(data_dir)},
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout.splitlines()[-1]
