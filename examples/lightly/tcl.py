"""TCL in your own Lightly-style script: momentum encoders and local features.

TCL (Yang et al., CVPR 2022) needs, besides one embedding per view, what the
objective's ``requirements`` list (``lightly-mm plugins --requirements``):

* two augmented image views (the ``tcl`` view) and one caption;
* momentum (EMA) encoders: a copy of the image backbone made with lightly's
  ``deactivate_requires_grad`` and moved with ``update_momentum`` before each step
  (the frozen text model is its own momentum copy);
* local features (feature-map cells of the image, tokens of the caption) of both
  the online and the momentum encoders, from ``forward_local``.

    python examples/lightly/tcl.py --epochs 1
"""

from __future__ import annotations

import argparse
import copy

import pytorch_lightning as pl
import torch
from lightly.models.utils import deactivate_requires_grad, update_momentum
from torch.utils.data import DataLoader

import lightly_mm_plugins as lmm
from lightly_mm_plugins.api import EncodedBatch
from lightly_mm_plugins.data import ViewDataset, collate_samples, load_dataset
from lightly_mm_plugins.encoders import build_encoder, frozen_text_encoder


class TCLModel(pl.LightningModule):
    def __init__(self, image_encoder: str = "timm:resnet18", lr: float = 1e-3) -> None:
        super().__init__()
        # A timm ResNet-18 (random init) with global features and feature-map cells.
        self.image_backbone = build_encoder("image", image_encoder, image_size=16)
        self.image_momentum = copy.deepcopy(self.image_backbone)
        deactivate_requires_grad(self.image_momentum)
        self.text_backbone = frozen_text_encoder()
        dims = {"image": self.image_backbone.feature_dim, "text": self.text_backbone.feature_dim}
        local = {"image": self.image_backbone.local_dim, "text": self.text_backbone.local_dim}
        self.criterion = lmm.create_objective(
            "tcl", embedding_dims=dims, local_dims=local, queue_size=256
        )
        self.lr = lr

    def training_step(self, batch, batch_idx):
        req = self.criterion.requirements  # momentum=True, local_features=True, image: 2 views
        update_momentum(self.image_backbone, self.image_momentum, m=req.momentum_decay)
        views = batch.observations["image"]  # (N, 2, 3, H, W)
        n, v = views.shape[:2]
        img, img_local, img_mask = self.image_backbone.forward_local(views.flatten(0, 1))
        with torch.no_grad():
            mom, mom_local, _ = self.image_momentum.forward_local(views.flatten(0, 1))
        captions = [row[0] for row in batch.observations["text"]]
        txt, txt_local, txt_mask = self.text_backbone.forward_local(captions)

        def per_view(t, views=v):  # (N*V, ...) -> (N, V, ...)
            return t.reshape(n, views, *t.shape[1:])

        encoded = EncodedBatch.from_tensors(
            {"image": per_view(img), "text": txt[:, None]},
            instance_ids=batch.instance_ids,
            momentum={"image": per_view(mom), "text": txt[:, None]},
            local={"image": per_view(img_local), "text": txt_local[:, None]},
            momentum_local={"image": per_view(mom_local), "text": txt_local[:, None]},
            local_masks={"image": per_view(img_mask), "text": txt_mask[:, None]},
        )
        out = self.criterion(encoded)
        self.log("train_loss", out.loss, prog_bar=True, batch_size=n)
        return out.loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.criterion.on_after_optimizer_step()  # caps the learnable temperature

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
    parser.add_argument("--image-encoder", default="timm:resnet18")
    parser.add_argument("--max-steps", type=int, default=-1, help="stop after N steps")
    args = parser.parse_args()
    fast = args.max_steps > 0
    loader = make_loader("tcl", args.batch_size, limit=args.batch_size * 4 if fast else None)
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        max_steps=args.max_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=not fast,
    )
    trainer.fit(TCLModel(args.image_encoder), loader)
    print(f"final train_loss {float(trainer.callback_metrics['train_loss']):.4f}")


if __name__ == "__main__":
    main()
