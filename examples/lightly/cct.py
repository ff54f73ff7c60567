"""CCT in your own Lightly-style script, with a timm backbone.

CCT (Zheng et al., 2021) contrasts within and across modalities: the ``cct``
view gives two augmented image views and a caption; the objective uses both
views (``(N, 2, D)``) and restricts negatives when pseudo labels are given. The
image backbone is any ``timm.create_model`` name (random init, nothing
downloaded; ``pip install 'lightly-mm-plugins[timm]'``).

    python examples/lightly/cct.py --epochs 1 --timm-model resnet18
"""

from __future__ import annotations

import argparse

import pytorch_lightning as pl
import timm
import torch
from torch.utils.data import DataLoader

import lightly_mm_plugins as lmm
from lightly_mm_plugins.api import EncodedBatch
from lightly_mm_plugins.data import ViewDataset, collate_samples, load_dataset
from lightly_mm_plugins.encoders import frozen_text_encoder


class CCTModel(pl.LightningModule):
    def __init__(self, timm_model: str = "resnet18", lr: float = 1e-3) -> None:
        super().__init__()
        # num_classes=0: timm returns pooled features (N, num_features).
        self.image_backbone = timm.create_model(timm_model, pretrained=False, num_classes=0)
        self.text_backbone = frozen_text_encoder()
        dims = {"image": self.image_backbone.num_features, "text": self.text_backbone.feature_dim}
        self.criterion = lmm.create_objective("cct", embedding_dims=dims)
        self.lr = lr

    def training_step(self, batch, batch_idx):
        views = batch.observations["image"]  # (N, 2, 3, H, W): two augmented views
        n, v = views.shape[:2]
        images = self.image_backbone(views.flatten(0, 1)).reshape(n, v, -1)
        captions = [row[0] for row in batch.observations["text"]]
        encoded = EncodedBatch.from_tensors(
            {"image": images, "text": self.text_backbone(captions)[:, None]},
            instance_ids=batch.instance_ids,
        )
        out = self.criterion(encoded)
        self.log("train_loss", out.loss, prog_bar=True, batch_size=n)
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
    parser.add_argument("--timm-model", default="resnet18")
    parser.add_argument("--max-steps", type=int, default=-1, help="stop after N steps")
    args = parser.parse_args()
    fast = args.max_steps > 0
    loader = make_loader("cct", args.batch_size, limit=args.batch_size * 4 if fast else None)
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        max_steps=args.max_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=not fast,
    )
    trainer.fit(CCTModel(args.timm_model), loader)
    print(f"final train_loss {float(trainer.callback_metrics['train_loss']):.4f}")


if __name__ == "__main__":
    main()
