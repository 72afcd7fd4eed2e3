"""The model: :class:`~simcse.modeling.encoder.Encoder` (a Hugging Face encoder plus a pooler and SimCSE's
MLP), the model directory formats it reads and writes, the poolers, and the CPU execution paths (packed
rows, cheaper dropout masks). Imports nothing from training, evaluation, use or cli."""
