"""CPU stand-in for ``sgl_kernel`` — TEST SUPPORT ONLY, NOT A FEATURE (see ../README.md).

Defines only the op names SGLang 0.5.23 imports at start-up with ``SGLANG_USE_CPU_ENGINE=1``;
each raises ``NotImplementedError`` if called. Put on ``PYTHONPATH`` for CPU server runs only.
"""

from sgl_kernel._standin import unavailable_op

__all__ = [
    "copy_all_layer_kv_cache_cpu",
    "assign_req_to_token_pool_cpu",
    "assign_draft_cache_locs_contiguous_cpu",
    "assign_extend_cache_locs_cpu",
    "build_tree_kernel_efficient_cpu",
    "verify_tree_greedy_cpu",
    "fill_accept_out_cache_loc_cpu",
    "fill_bonus_tokens_cpu",
    "rotate_input_ids_cpu",
]

copy_all_layer_kv_cache_cpu = unavailable_op("sgl_kernel.copy_all_layer_kv_cache_cpu")
assign_req_to_token_pool_cpu = unavailable_op("sgl_kernel.assign_req_to_token_pool_cpu")
assign_draft_cache_locs_contiguous_cpu = unavailable_op("sgl_kernel.assign_draft_cache_locs_contiguous_cpu")
assign_extend_cache_locs_cpu = unavailable_op("sgl_kernel.assign_extend_cache_locs_cpu")
build_tree_kernel_efficient_cpu = unavailable_op("sgl_kernel.build_tree_kernel_efficient_cpu")
verify_tree_greedy_cpu = unavailable_op("sgl_kernel.verify_tree_greedy_cpu")
fill_accept_out_cache_loc_cpu = unavailable_op("sgl_kernel.fill_accept_out_cache_loc_cpu")
fill_bonus_tokens_cpu = unavailable_op("sgl_kernel.fill_bonus_tokens_cpu")
rotate_input_ids_cpu = unavailable_op("sgl_kernel.rotate_input_ids_cpu")
