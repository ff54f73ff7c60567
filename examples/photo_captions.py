"""A COCO-layout captions folder of real photographs, built from scikit-image's bundled
images (they ship inside the package: nothing is downloaded).

Writes ``OUT/captions.json`` (COCO captions: ``images[*].file_name`` relative to
``OUT/images/``) and ``OUT/images/*.png|jpg``: 14 photos, three captions each.

    python examples/photo_captions.py photos/
    lightly-mm train --method clip --data photos/captions.json --image-root photos/images/
    lightly-mm data to-shards photos/captions.json photos/shards --shard-size 7
    lightly-mm train --method clip --data 'photos/shards/{000000..000001}.tar' --no-eval
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

#: Bundled scikit-image photographs and three captions each.
PHOTOS = {
    "astronaut.png": ["an astronaut in a white space suit", "a smiling woman astronaut",
                      "portrait of an astronaut with a flag"],
    "chelsea.png": ["a tabby cat looking to the side", "an orange and grey cat",
                    "close-up of a cat's face"],
    "coffee.png": ["a cup of coffee on a saucer", "a red cup of coffee with a spoon",
                   "coffee seen from above"],
    "rocket.jpg": ["a rocket on the launch pad", "a space rocket before lift-off",
                   "a tall white rocket against the sky"],
    "motorcycle_left.png": ["a red motorcycle in a garage", "a parked motorbike",
                            "a motorcycle seen from the side"],
    "hubble_deep_field.jpg": ["distant galaxies in deep space", "a telescope image of galaxies",
                              "many small galaxies on black"],
    "retina.jpg": ["a photograph of a human retina", "the back of an eye with blood vessels",
                   "a fundus image of the eye"],
    "camera.png": ["a man with a camera on a tripod", "a black and white photo of a cameraman",
                   "a photographer in a field"],
    "coins.png": ["old coins on a dark background", "many round coins",
                  "a grey image of coins in rows"],
    "moon.png": ["the surface of the moon", "craters on the moon",
                 "a grey lunar landscape"],
    "page.png": ["a page of printed text", "a scanned book page",
                 "black text on a grey page"],
    "horse.png": ["the silhouette of a horse", "a black horse shape on white",
                  "a horse outline"],
    "brick.png": ["a brick wall", "grey bricks and mortar", "a wall texture of bricks"],
    "grass.png": ["a patch of grass", "blades of grass close up", "a grass texture"],
}  # fmt: skip


def write_coco_photos(out: str | Path) -> Path:
    """Write the folder; returns the path of ``captions.json``."""
    import skimage

    src = Path(skimage.__file__).parent / "data"
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i, (name, captions) in enumerate(PHOTOS.items()):
        shutil.copyfile(src / name, out / "images" / name)
        images.append({"id": i, "file_name": name})
        annotations += [
            {"id": len(annotations) + j, "image_id": i, "caption": c}
            for j, c in enumerate(captions)
        ]
    path = out / "captions.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations}, indent=1))
    return path


if __name__ == "__main__":  # pragma: no cover
    print(write_coco_photos(sys.argv[1] if len(sys.argv) > 1 else "photos"))
