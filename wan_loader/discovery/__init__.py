"""Where the weights are: in folders, files and {component: path} dicts, and on the Hugging Face Hub."""
