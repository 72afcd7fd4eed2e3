"""Training-free sentence encoders from the related work, selectable wherever a model is
(``baseline:NAME[:SOURCE]``), so that they are computed by the same evaluator on the same encoder."""
