"""The models: plain `nn.Module` networks and `Classifier`, the LightningModule that trains any of them."""
