"""FactorCL in your own Lightly-style script: the auxiliary CLUB step, by hand.

FactorCL (Liang et al., NeurIPS 2023) trains its CLUB critics with a second
optimiser on a separate loss (``objective.auxiliary_loss``) over only
``objective.auxiliary_parameters()``, on embeddings detached from the encoders;
the main optimiser never sees those parameters. In Lightning that is manual
optimisation with two optimisers. The ``factorcl-multimodal`` view gives two
augmented views per modality.

    python examples/lightly/factorcl.py --epochs 1
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


class FactorCLModel(pl.LightningModule):
    def __init__(self, lr: float = 1e-3) -> None:
        super().__init__()
        self.automatic_optimization = False  # two optimisers, stepped by hand
        self.image_backbone = resnet18_small()
        self.text_backbone = frozen_text_encoder()
        self.criterion = lmm.create_objective(
            "factorcl", embedding_dims={"image": 512, "text": self.text_backbone.feature_dim}
        )
        self.lr = lr

    def training_step(self, batch, batch_idx):
        views = batch.observations["image"]  # (N, 2, 3, H, W)
        n, v = views.shape[:2]
        captions = [c for row in batch.observations["text"] for c in row]  # N*2
        encoded = EncodedBatch.from_tensors(
            {
                "image": self.image_backbone(views.flatten(0, 1)).reshape(n, v, -1),
                "text": self.text_backbone(captions).reshape(n, v, -1),
            },
            instance_ids=batch.instance_ids,
        )
        main_opt, club_opt = self.optimizers()
        out = self.criterion(encoded)  # FactorCL's main objective
        main_opt.zero_grad()
        self.manual_backward(out.loss)
        main_opt.step()
        # The auxiliary CLUB step: critics only, on embeddings detached from the encoders.
        detached = encoded.replace(
            embeddings={m: e.detach() for m, e in encoded.embeddings.items()}
        )
        for _ in range(max(1, self.criterion.auxiliary_steps)):
            club_opt.zero_grad()
            aux = self.criterion.auxiliary_loss(detached)
            self.manual_backward(aux)
            club_opt.step()
        self.criterion.on_after_optimizer_step()
        self.log_dict({"train_loss": out.loss, "club_loss": aux}, prog_bar=True, batch_size=n)

    def configure_optimizers(self):
        club = list(self.criterion.auxiliary_parameters())
        ids = {id(p) for p in club}
        main = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        return [
            torch.optim.AdamW(main, lr=self.lr),
            torch.optim.Adam(club, lr=self.criterion.auxiliary_lr),
        ]


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
    parser.add_argument("--max-steps", type=int, default=-1, help="stop after N batches")
    args = parser.parse_args()
    fast = args.max_steps > 0
    loader = make_loader(
        "factorcl-multimodal", args.batch_size, limit=args.batch_size * 4 if fast else None
    )
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        limit_train_batches=args.max_steps if fast else None,  # steps count both optimisers
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=not fast,
    )
    trainer.fit(FactorCLModel(), loader)
    print(f"final train_loss {float(trainer.callback_metrics['train_loss']):.4f}")


if __name__ == "__main__":
    main()
