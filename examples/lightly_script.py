"""Use a registered objective from your own Lightly-style training script.

Everything here is ordinary Lightly / Lightning code: your own LightningModule,
your own backbones (a torchvision ResNet and a sentence-transformers model),
your own loop. Only the objective comes from lightly-mm-plugins, by name,
through entry-point discovery, exactly where you would put
``lightly.loss.NTXentLoss``.

Run it (on the embedded digits + captions; nothing is downloaded)::

    python examples/lightly_script.py --method clip --epochs 1
"""

from __future__ import annotations

import argparse

import pytorch_lightning as pl
import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader

import lightly_mm_plugins as lmm
from lightly_mm_plugins.api import EncodedBatch
from lightly_mm_plugins.data import ViewDataset, collate_samples, load_dataset
from lightly_mm_plugins.encoders import build_encoder


class ImageTextModel(pl.LightningModule):
    """A Lightly-style module: backbones + a loss, nothing else."""

    def __init__(self, method: str) -> None:
        super().__init__()
        resnet = torchvision.models.resnet18(weights=None, num_classes=1)
        resnet.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)  # small images
        resnet.maxpool = nn.Identity()
        resnet.fc = nn.Identity()
        self.image_backbone = resnet
        self.text_backbone = build_encoder("text")  # frozen MiniLM, offline
        # The only line that touches the plugin host:
        self.criterion = lmm.create_objective(
            method, embedding_dims={"image": 512, "text": self.text_backbone.feature_dim}
        )

    def training_step(self, batch, batch_idx):
        images = batch.observations["image"][:, 0]
        captions = [row[0] for row in batch.observations["text"]]
        encoded = EncodedBatch.from_tensors(
            {"image": self.image_backbone(images), "text": self.text_backbone(captions)},
            instance_ids=batch.instance_ids,
        )
        loss = self.criterion(encoded).loss
        self.log("train_loss", loss, prog_bar=True, batch_size=batch.batch_size)
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--method", default="clip", help=f"one of {lmm.list_names('objectives')}")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--limit-batches", type=int, default=None)
    args = parser.parse_args()

    data = load_dataset("default", split="train")
    view = lmm.create_view("clip", modalities=data.modalities, image_size=32)
    loader = DataLoader(
        ViewDataset(data, view, train=True),
        batch_size=64,
        shuffle=True,
        drop_last=True,
        collate_fn=lambda samples: collate_samples(samples, data.modalities),
    )
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        accelerator="auto",
        devices=1,
        limit_train_batches=args.limit_batches,
        logger=False,
        enable_checkpointing=False,
    )
    model = ImageTextModel(args.method)
    trainer.fit(model, loader)
    print(f"final train_loss {float(trainer.callback_metrics['train_loss']):.4f}")


if __name__ == "__main__":
    main()
