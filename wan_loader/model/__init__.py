"""What a model and a weights file are: the component set, module configs, file identification, FP8Linear."""
