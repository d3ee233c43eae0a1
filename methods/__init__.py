"""Reference implementations, one module per method, grouped by taxonomy category.

Imported as ``vlmeft.methods`` (setuptools maps this folder into the package).
Methods are looked up through :mod:`vlmeft.registry`, never by importing this package.

How a module's "Fidelity" section was measured: the official repository (at the commit
named) ran outside this project, with Dassl and the weight download stubbed, on one random
CLIP at ViT-B/16 widths (text 512 x 12 layers, vision 768 x 12, embed 1024, 64 px images,
patch 16), built in open_clip and loaded, state dict for state dict, into the repository's
own OpenAI-layout ``clip.model``; both sides in fp32, the same trainable tensors copied
into ours, class names with underscores (``golden_retriever``). One training step compares
the logits, the loss and the gradient of every trainable tensor (max absolute difference,
and relative to the largest value); fp32 rounding puts agreement at about 1e-6 relative.
The repositories' hard-coded ``.half()`` casts of prompts were made identities (with them
the difference is fp16 rounding, about 2e-3 relative) and ``.cuda()`` stays on the CPU.
``faithful`` in a method's record means this comparison agrees in the paper's configuration.
"""
