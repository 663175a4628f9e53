"""monitorctl: the operator's command line for a deployed monitor (the target registry, the
fleet's token store). `python -m monitorctl --help`."""
