"""Precision: ``auto`` resolves to bfloat16 only where the machine computes it natively and faster than float32,
forced bfloat16 fails in one line where a kernel refuses it and warns where it is slow, and the run records what it
resolved to."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

import cadence.train.precision as precision_module
from cadence.train import PrecisionError, Trainer, resolve_precision
from cadence.train.precision import bf16_support, check_precision

CPU = torch.device("cpu")
AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


def in_subprocess(code: str, env: dict[str, str]) -> str:
    result = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture
def without_native_bf16(monkeypatch):
    """This process's CPU as one without bfloat16 instructions, where oneDNN refuses a bfloat16 LSTM."""
    missing = "this CPU (test) has no bfloat16 instructions (none of avx512_bf16, amx_bf16, bf16)"
    monkeypatch.setattr(precision_module, "_cpu_bf16_support", lambda: missing)
    monkeypatch.setattr(precision_module, "_lstm_refused", lambda: missing)


SLOWER = "oneDNN's bfloat16 matmul takes 2.0x float32's time on this CPU"


@pytest.fixture
def bf16_slow(monkeypatch):
    """This process's CPU as one with bfloat16 instructions that oneDNN runs, LSTM included, slower than float32."""
    monkeypatch.setattr(precision_module, "_cpu_bf16_support", lambda: SLOWER)
    monkeypatch.setattr(precision_module, "_lstm_refused", lambda: None)


def test_auto_is_bf16_only_where_the_cpu_has_bf16_instructions_onednn_uses_them_and_they_pay():
    instructions = bool(precision_module._cpu_flags() & set(precision_module._BF16_FLAGS))
    allowed = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() not in precision_module._ONEDNN_WITHOUT_BF16
    native = instructions and allowed and precision_module._lstm_refused() is None
    assert (bf16_support(CPU) is None) == (native and precision_module._bf16_slower() is None)
    if not instructions:
        assert "has no bfloat16 instructions (none of avx512_bf16, amx_bf16, bf16)" in bf16_support(CPU)
    assert resolve_precision("auto", CPU) == ("bf16" if bf16_support(CPU) is None else "32")
    # oneDNN limited to AVX2, as on a CPU without AVX-512: float32, whatever CPUID says.
    code = "import torch; from cadence.train import resolve_precision; print(resolve_precision('auto', torch.device('cpu')))"
    assert in_subprocess(code, AVX2) == "32"


def test_bf16_instructions_that_do_not_pay_resolve_auto_to_float32(monkeypatch):
    monkeypatch.setattr(precision_module, "_bf16_slower", lambda: SLOWER)
    monkeypatch.setattr(precision_module, "_cpu_bf16_support", precision_module._cpu_bf16_support.__wrapped__)
    if not precision_module._cpu_flags() & set(precision_module._BF16_FLAGS):
        pytest.skip("this CPU has no bfloat16 instructions: the instructions' check decides first")
    if os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() in precision_module._ONEDNN_WITHOUT_BF16:
        pytest.skip("oneDNN is limited below bfloat16 here: the limit's check decides first")
    assert bf16_support(CPU) == SLOWER
    assert resolve_precision("auto", CPU) == "32"


def test_the_speed_probe_finds_emulated_bf16_slower():
    """With oneDNN kept below its bfloat16 instructions, the product runs emulated: the probe must see it lose."""
    code = "from cadence.train.precision import _bf16_slower; print(_bf16_slower())"
    out = in_subprocess(code, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"})
    assert out.startswith("oneDNN's bfloat16 matmul takes ") and out.endswith("x float32's time on this CPU"), out


@pytest.mark.parametrize("precision", ["32", "bf16", "fp16"])
def test_a_precision_given_is_kept_and_an_unknown_one_refused(precision):
    assert resolve_precision(precision, CPU) == precision
    with pytest.raises(ValueError, match=r"precision='16'; expected one of 'auto', '32', 'bf16', 'fp16'"):
        resolve_precision("16", CPU)


def test_forced_bf16_with_an_lstm_fails_in_one_line_naming_what_the_cpu_lacks(without_native_bf16):
    model = nn.Sequential(nn.Embedding(5, 4), nn.LSTM(4, 4))
    with pytest.raises(PrecisionError, match=r"^precision='bf16': this CPU \(test\) has no bfloat16 instructions .*, so "
                                             r"oneDNN has no bfloat16 kernel of the model's LSTM '1'; use "
                                             r"precision='auto' \(float32 on this machine\) or '32'$"):
        Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), [], precision="bf16", console=False)
    # A refusal is one line: the command shows it without a traceback.
    assert resolve_precision("auto", CPU) == "32"


@pytest.mark.parametrize("model", [nn.Linear(4, 2), nn.LSTM(4, 4)], ids=["linear", "lstm"])
def test_forced_bf16_where_it_is_slow_warns_once_and_runs(bf16_slow, model):
    with pytest.warns(RuntimeWarning, match=r"^precision='bf16': oneDNN's bfloat16 matmul takes 2.0x float32's time "
                                            r"on this CPU, so training will be slower than in float32; "
                                            r"precision='auto' picks float32"):
        check_precision("bf16", CPU, model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_precision("32", CPU, model)


def test_the_real_refusal_is_what_the_check_predicts():
    """Where oneDNN refuses a bfloat16 LSTM (limited to AVX2), the check says so before training, in one line."""
    code = ("import torch\nfrom torch import nn\nfrom cadence.train.precision import check_precision, PrecisionError\n"
            "try:\n    check_precision('bf16', torch.device('cpu'), nn.LSTM(4, 4))\n"
            "except PrecisionError as e:\n    print(e)\n")
    out = in_subprocess(code, AVX2)
    assert out.startswith("precision='bf16': ") and "ONEDNN_MAX_CPU_ISA=AVX2" in out and "LSTM" in out


def test_the_probe_leaves_the_random_generators_as_they_were():
    precision_module._cpu_bf16_support.cache_clear()
    precision_module._lstm_refused.cache_clear()
    precision_module._bf16_slower.cache_clear()
    torch.manual_seed(3)
    before = torch.get_rng_state()
    bf16_support(CPU)
    assert torch.equal(before, torch.get_rng_state())
