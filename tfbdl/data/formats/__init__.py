"""Parsers of the dataset file formats: IDX (MNIST family), CIFAR pickles, notMNIST archives."""

__all__: list[str] = []  # the parsers live in the submodules: idx, cifar, notmnist
