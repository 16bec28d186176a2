"""The data: dataset files (packaged MNIST, Fashion-MNIST), the in-memory LightningDataModule,
batched augmentation, and users' own digit images in MNIST's format."""
