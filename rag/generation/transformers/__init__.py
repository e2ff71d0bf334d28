"""The transformers engine: our greedy decoding loop over a transformers model on torch's CPU kernels.

`engine` streams answers (cached system prompt, prompt lookup, cancel), `quantization` packs weights to
int4/int8 for decoding, and `prepare` converts the packaged GGUF once into a bf16 folder to load.
"""
