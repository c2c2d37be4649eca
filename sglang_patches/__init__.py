"""SGLang 0.5.23 integration: the ``sglang.srt.plugins`` entry point (:mod:`.plugin`), its hooks
(:mod:`.hooks`), the TOML config (:mod:`.config`) and ``moesched serve`` (:mod:`.serve`).

Only :mod:`.config` and :mod:`.serve` import without SGLang; the hooks are imported by the plugin
inside SGLang processes.
"""
