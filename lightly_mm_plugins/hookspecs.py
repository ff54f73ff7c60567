"""The plugin author's contract: every hook the host calls.

A plugin is a module with functions marked ``@hookimpl``; it is found through
an entry point in the group ``lightly_mm_plugins`` whose name is the plugin's
distribution name::

    [project.entry-points.lightly_mm_plugins]
    lightly-mm-myloss = "lightly_mm_myloss.plugin"

Every hook receives one argument, ``register``, bound to the calling plugin so
that each registration records which distribution it came from. Call it once
per component::

    register(name, factory, *, description="...", **metadata)

* ``name``: lower case, ``[a-z0-9][a-z0-9_.-]*``, unique per kind across all
  installed plugins (a clash is reported, never silently overridden).
* ``factory``: a callable that builds the component from keyword arguments, or
  a ``"module:attr"`` string imported only when the component is created (so
  that registering imports no torch and ``lightly-mm plugins`` stays fast).
* ``description``: one line shown by ``lightly-mm plugins``.
* ``metadata``: free keyword arguments kept with the entry (e.g. ``paper=``).

The hooks are called lazily, the first time a registry is asked for, once per
process. Hook return values are ignored. A hook that raises has all its
registrations for that kind rolled back; the failure is recorded and shown by
``lightly-mm plugins``; other plugins are unaffected.

Hook arguments have no default values (pluggy 1.6 and 1.7 treat defaults
differently). New arguments are only ever added; a plugin may accept fewer
arguments than the spec lists (pluggy passes only the ones it names).

:data:`HOOKSPEC_VERSION` is the version of this contract: the minor number
grows when a hook is added (1.1 added :func:`register_encoders`; a plugin
built for 1.0 works unchanged), the major number when a hook changes
incompatibly. A plugin may set a
module attribute ``LIGHTLY_MM_HOOKSPEC = "1"``; a plugin built for a newer
major version than the host is rejected with a clear error instead of a
confusing ``TypeError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .registry import Register

PROJECT_NAME = "lightly_mm_plugins"
ENTRY_POINT_GROUP = "lightly_mm_plugins"
HOOKSPEC_VERSION = "1.1"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_views(register: Register) -> None:
    """Register multimodal views (augmentations producing what an objective needs).

    Called once, the first time the view registry is used.

    ``factory(**kwargs)`` must return a :class:`lightly_mm_plugins.api.View`.
    The host passes ``modalities`` (dict of modality name -> kind, e.g.
    ``{"image": "image", "text": "text"}``) and ``image_size`` (int), plus the
    user's keyword arguments; accept ``**kwargs`` for forward compatibility.

    Example::

        @hookimpl
        def register_views(register):
            register("two-crops", "my_plugin.views:TwoCrops",
                     description="two augmented image views, one caption")
    """


@hookspec
def register_objectives(register: Register) -> None:
    """Register objectives: losses together with the heads they train.

    Called once, the first time the objective registry is used.

    ``factory(embedding_dims=..., modalities=..., **kwargs)`` must return a
    :class:`lightly_mm_plugins.api.Objective`. ``embedding_dims`` maps each
    modality name to its encoder's output size, ``modalities`` names the
    modalities to contrast. Useful metadata: ``view="<view name>"`` (the view
    the pipeline uses by default with this objective) and
    ``scheduler="<scheduler name>"`` (default stage scheduler).

    Example::

        @hookimpl
        def register_objectives(register):
            register("my-loss", "my_plugin.objective:MyObjective",
                     description="InfoNCE with a twist", view="clip")
    """


@hookspec
def register_heads(register: Register) -> None:
    """Register projection / prediction heads usable by any objective.

    Called once, the first time the head registry is used.

    ``factory(input_dim=..., output_dim=..., **kwargs)`` must return a
    ``torch.nn.Module`` mapping ``(N, input_dim)`` to ``(N, output_dim)``.

    Example::

        @hookimpl
        def register_heads(register):
            register("mlp2", "my_plugin.heads:TwoLayerHead")
    """


@hookspec
def register_stage_schedulers(register: Register) -> None:
    """Register stage schedulers (single- or multi-stage training).

    Called once, the first time the scheduler registry is used.

    ``factory(epochs=..., **kwargs)`` must return a
    :class:`lightly_mm_plugins.api.StageScheduler`; ``epochs`` is the number
    of epochs the user asked for per stage.

    Example::

        @hookimpl
        def register_stage_schedulers(register):
            register("two-stage", "my_plugin.stages:TwoStage")
    """


@hookspec
def register_encoders(register: Register) -> None:
    """Register modality encoders (backbones), usable by name on the command line.

    Called once, the first time the encoder registry is used. Added in hook
    spec 1.1.

    ``factory(kind=..., model=..., **kwargs)`` must return a
    :class:`lightly_mm_plugins.api.Encoder` (``feature_dim`` > 0; set
    ``supports_local`` and implement ``forward_local`` where the backbone has
    local features). ``kind`` is the modality kind (``image``, ``text``,
    ``vector``); ``model`` is what follows the colon in ``--image-encoder
    NAME:MODEL`` (None, or ``default_model``, for a plain name). ``kwargs``
    are what the pipeline knows: ``image_size`` for images, ``trainable`` for
    text, ``input_dim`` for vectors, and ``weights_path`` only when the user
    passed ``--image-weights`` / ``--text-weights`` (load it with
    :func:`lightly_mm_plugins.encoders.weights.load_weights`; never download
    anything). Accept ``**kwargs`` for forward compatibility.

    Metadata the host reads: ``modalities=("image",)`` (the kinds it
    encodes; required), ``takes_model=True`` (a family used as ``name:model``),
    ``default_model="..."`` (the model of a plain name).

    Example::

        @hookimpl
        def register_encoders(register):
            register("my-cnn", "my_plugin.encoders:MyCNN", modalities=("image",),
                     description="a 4-layer CNN")
    """
