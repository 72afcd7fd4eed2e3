"""The base layer: errors, files, YAML, the process and its precision, the CPU; imports nothing else of simcse."""
