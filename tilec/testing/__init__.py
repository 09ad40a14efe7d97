"""Test support for tilec: random attention batches (attention_cases) and independent
float32 oracles in torch (oracle).  Import the submodules directly; this package imports
nothing heavy on its own."""
