"""koogallery-simulator: a fake Huawei Cloud KooGallery marketplace for contract-testing merchants."""

__version__ = "0.1.0"
