"""fer-baselines: reference models for fer_bench, registered through the entry-point group
``fer_bench.models`` exactly as a third-party package would (see ``pyproject.toml``).

``classic``: timm VGG / ResNet / DenseNet / MobileNet / EfficientNet adapted to 48x48
grayscale; ``small_cnn``: a tiny CNN for quick runs. Importing this package imports neither.
"""

__version__ = "0.1.0"
