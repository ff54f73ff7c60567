"""MCL in your own Lightly-style script: the stages as the plugin's Lightning callback.

MCL (Zhang et al., ECCV 2024) trains in stages. After each stage it embeds the
training set, clusters it with k-means, restarts the encoders from stage 0 and
contrasts each anchor only against negatives of its own (combined) cluster.
``lightly_mm_mcl.MCLStages`` does all of that with the same code as
``lightly-mm train``; the script gives it a function that embeds the training
set, keeps its encoders in a ``ModuleDict`` named ``backbones`` and hands each
batch its pseudo labels. Without them ``mcl`` refuses to train (it would be
plain CLIP).

    python examples/lightly/mcl.py --epochs-per-stage 2 --num-stages 3
"""

from __future__ import annotations

import argparse

import pytorch_lightning as pl
import torch
import torchvision
from lightly_mm_mcl import MCLStages
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


class MCLModel(pl.LightningModule):
    def __init__(self, stages: MCLStages, lr: float = 1e-3) -> None:
        super().__init__()
        self.backbones = nn.ModuleDict({"image": resnet18_small(), "text": frozen_text_encoder()})
        dims = {"image": 512, "text": self.backbones["text"].feature_dim}
        self.criterion = lmm.create_objective("mcl", embedding_dims=dims)  # inner: clip
        self.stages, self.lr = stages, lr

    def embed(self, batch) -> torch.Tensor:
        image = self.backbones["image"](batch.observations["image"][:, 0].to(self.device))
        text = self.backbones["text"]([row[0] for row in batch.observations["text"]])
        return torch.cat([image, text], dim=1)

    def training_step(self, batch, batch_idx):
        images = batch.observations["image"][:, 0]
        captions = [row[0] for row in batch.observations["text"]]
        ids = batch.instance_ids
        encoded = EncodedBatch.from_tensors(
            {"image": self.backbones["image"](images), "text": self.backbones["text"](captions)},
            instance_ids=ids,
            pseudo_labels=self.stages.pseudo_labels(ids),  # None in stage 0
        )
        out = self.criterion(encoded)
        self.log("train_loss", out.loss, prog_bar=True, batch_size=batch.batch_size)
        return out.loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.criterion.on_after_optimizer_step()

    def configure_optimizers(self):
        # All parameters: MCL freezes the text encoder in later stages (requires_grad).
        return torch.optim.AdamW(self.parameters(), lr=self.lr)


def make_loader(batch_size: int, limit: int | None, train: bool) -> DataLoader:
    data = load_dataset("default", split="train")
    if limit:
        data = data.subset(list(range(limit)))
    view = lmm.create_view("clip", modalities=data.modalities, image_size=16)
    return DataLoader(
        ViewDataset(data, view, train=train),  # train=False: the evaluation transform
        batch_size=batch_size,
        shuffle=train,
        drop_last=train,
        collate_fn=lambda samples: collate_samples(samples, data.modalities),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs-per-stage", type=int, default=1)
    parser.add_argument("--num-stages", type=int, default=2)
    parser.add_argument("--num-clusters", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-steps", type=int, default=-1, help="N batches per stage")
    args = parser.parse_args()
    fast = args.max_steps > 0
    limit = args.batch_size * args.max_steps if fast else None
    loader, plain = make_loader(args.batch_size, limit, True), make_loader(256, limit, False)

    def embed_training_set(module: MCLModel) -> tuple[torch.Tensor, torch.Tensor]:
        feats, ids = [], []
        for batch in plain:  # called under no_grad, in eval mode
            feats.append(module.embed(batch))
            ids.append(batch.instance_ids)
        return torch.cat(feats).cpu(), torch.cat(ids)

    stages = MCLStages(
        embed_training_set,
        encoders="backbones",
        epochs_per_stage=args.epochs_per_stage,
        num_stages=args.num_stages,
        num_clusters=2 if fast else args.num_clusters,
    )
    trainer = pl.Trainer(
        max_epochs=stages.total_epochs,
        callbacks=[stages],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=not fast,
    )
    trainer.fit(MCLModel(stages), loader)
    print(f"stages run: {stages.current_stage + 1}; clusterings: {len(stages.stage_states)}")
    print(f"final train_loss {float(trainer.callback_metrics['train_loss']):.4f}")


if __name__ == "__main__":
    main()
