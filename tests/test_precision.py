"""bf16 only where the hardware has it: CUDA, or a CPU with AVX512-BF16/AMX. On other CPUs PyTorch
emulates bf16, measured 6x slower than fp32 for the MLM step and 11x for the GCN decoder."""

from __future__ import annotations

import contextlib

import pytest
import torch

from hicd_core.models import common
from hicd_core.models.bert_train import precision
from hicd_core.models.graph_model import link_logits


@pytest.mark.parametrize("native", [False, True])
def test_bf16_only_with_bf16_units_on_cpu(native: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "cpu_has_native_bf16", lambda: native)
    cpu = torch.device("cpu")
    assert common.use_bf16(cpu) is native and common.use_bf16(cpu, requested=False) is False
    assert common.use_bf16("cuda") is True  # CUDA always computes bf16 natively
    with common.autocast(cpu):
        out = torch.ones(4, 4) @ torch.ones(4, 4)
    assert out.dtype == (torch.bfloat16 if native else torch.float32)
    with precision(cpu, True):
        out = torch.ones(4, 4) @ torch.ones(4, 4)
    assert out.dtype == (torch.bfloat16 if native else torch.float32)
    assert isinstance(common.autocast(cpu, enabled=False), contextlib.nullcontext)


def test_the_hardware_check_answers_and_gcn_scores_match_in_fp32() -> None:
    assert isinstance(common.cpu_has_native_bf16(), bool)
    z = torch.randn(50, 8)
    pairs = torch.randint(0, 50, (2, 30))
    torch.testing.assert_close(link_logits(z, pairs), (z[pairs[0]] * z[pairs[1]]).sum(-1))
