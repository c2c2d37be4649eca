"""CPU stand-in for ``sgl_kernel.mamba`` — TEST SUPPORT ONLY, NOT A FEATURE (see ../../README.md).

Defines only the op names SGLang 0.5.23's linear-attention backends import at start-up on the CPU;
each raises ``NotImplementedError`` if called.
"""

from sgl_kernel._standin import unavailable_op

__all__ = ["chunk_gated_delta_rule_cpu", "causal_conv1d_fn_cpu", "causal_conv1d_update_cpu"]

chunk_gated_delta_rule_cpu = unavailable_op("sgl_kernel.mamba.chunk_gated_delta_rule_cpu")
causal_conv1d_fn_cpu = unavailable_op("sgl_kernel.mamba.causal_conv1d_fn_cpu")
causal_conv1d_update_cpu = unavailable_op("sgl_kernel.mamba.causal_conv1d_update_cpu")
