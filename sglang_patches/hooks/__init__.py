"""One module per SGLang hook: request order, DP dispatch, EPLB algorithm."""
