"""MXM-CLR in your own Lightly-style script: several captions per image.

MXM-CLR contrasts every observation of an instance with every observation of the
others ("multifold"): the ``multifold`` view keeps all captions of an image,
collated as ``(N, V)`` strings with a padding mask. Encode the valid ones, put
them back as ``(N, V, D)`` (zeros at padding) and pass the mask: that is all
the plumbing it needs.

    python examples/lightly/mxmclr.py --epochs 1
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
from lightly_mm_plugins.encoders import frozen_text_encoder


def resnet18_small() -> nn.Module:
    resnet = torchvision.models.resnet18(weights=None)
    resnet.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)  # 16-32 px images
    resnet.maxpool = nn.Identity()
    resnet.fc = nn.Identity()
    return resnet


class MXMCLRModel(pl.LightningModule):
    def __init__(self, lr: float = 1e-3) -> None:
        super().__init__()
        self.image_backbone = resnet18_small()
        self.text_backbone = frozen_text_encoder()
        self.criterion = lmm.create_objective(
            "mxm-clr", embedding_dims={"image": 512, "text": self.text_backbone.feature_dim}
        )
        self.lr = lr

    def training_step(self, batch, batch_idx):
        images = batch.observations["image"][:, 0]  # (N, 3, H, W)
        mask = batch.masks["text"]  # (N, V) bool: False where an image has fewer captions
        captions = [c for row in batch.observations["text"] for c in row]  # N*V, padded
        valid = mask.flatten()
        text = self.text_backbone([c for c, keep in zip(captions, valid.tolist()) if keep])
        folds = text.new_zeros(valid.numel(), text.shape[-1])
        folds[valid] = text
        encoded = EncodedBatch(
            embeddings={
                "image": self.image_backbone(images)[:, None],  # (N, 1, 512)
                "text": folds.reshape(*mask.shape, -1),  # (N, V, 384)
            },
            masks={"image": batch.masks["image"][:, :1], "text": mask},
            instance_ids=batch.instance_ids,
        )
        out = self.criterion(encoded)
        self.log("train_loss", out.loss, prog_bar=True, batch_size=batch.batch_size)
        return out.loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.criterion.on_after_optimizer_step()

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.lr)


def make_loader(view_name: str, batch_size: int, limit: int | None) -> DataLoader:
    data = load_dataset("default", split="train")
    if limit:
        data = data.subset(list(range(limit)))
    view = lmm.create_view(view_name, modalities=data.modalities, image_size=16)
    return DataLoader(
        ViewDataset(data, view, train=True),
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        collate_fn=lambda samples: collate_samples(samples, data.modalities),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-steps", type=int, default=-1, help="stop after N steps")
    args = parser.parse_args()
    fast = args.max_steps > 0
    loader = make_loader("multifold", args.batch_size, limit=args.batch_size * 4 if fast else None)
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        max_steps=args.max_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=not fast,
    )
    trainer.fit(MXMCLRModel(), loader)
    print(f"final train_loss {float(trainer.callback_metrics['train_loss']):.4f}")


if __name__ == "__main__":
    main()
