"""A picture of a scale-permuted network, in the style of the SpineNet figures.

Blocks run left to right in build order (stem first) at the height of their
level; shape and colour give the block type. Solid arrows are the two
resampled inputs of a block, dashed arrows the output merges; output blocks
have a thick edge and a `P<level>` label; blocks that feed no output are grey.
"""

import os

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, FancyArrowPatch, RegularPolygon

from spinenet_tf import specs as specs_lib
from spinenet_tf.models.backbone import resolve_block_specs

RADIUS = 0.3
BOW = 0.55  # the largest sideways bend of a long arrow, in level units
STYLE = {  # block_fn -> (legend name, face colour, patch maker)
    specs_lib.BOTTLENECK: ('bottleneck', '#4c72b0',
                           lambda xy: RegularPolygon(xy, 4, radius=RADIUS * 1.3,
                                                     orientation=0.785398)),
    specs_lib.RESIDUAL: ('residual', '#dd8452',
                         lambda xy: Circle(xy, RADIUS)),
    specs_lib.MBCONV: ('mbconv', '#55a868',
                       lambda xy: RegularPolygon(xy, 6, radius=RADIUS * 1.15)),
}
LEGEND_MARKERS = {specs_lib.BOTTLENECK: 's', specs_lib.RESIDUAL: 'o',
                  specs_lib.MBCONV: 'h'}
UNUSED_FACE, UNUSED_EDGE = '#dddddd', '#aaaaaa'
INPUT_COLOR, MERGE_COLOR = '#444444', '#8e44ad'


def _title(specs_or_model_id):
  """A default title naming the model id, the YAML file or 'custom specs'."""
  if isinstance(specs_or_model_id, (str, os.PathLike)):
    name = os.fspath(specs_or_model_id)
    if name.endswith(('.yaml', '.yml')):
      return f'SpineNet from {os.path.basename(name)}'
    model_id = specs_lib.resolve_model_id(name)
    if model_id in specs_lib.SEARCHED_MODELS:
      return model_id
    return 'SpineNet-' + model_id.replace('mobile-', 'Mobile-')
  return 'SpineNet (custom block specs)'


def _in_stem(block):
  """The implied stem blocks and the chain blocks (one input) of an R[N]
  stem."""
  return block.is_stem or len(block.parents) == 1


def _position(block):
  """Stem blocks sit a little apart from the scale-permuted blocks."""
  return (block.index + (0 if _in_stem(block) else 0.6), block.level)


def _draw_block(ax, block, used, endpoint):
  name, face, make = STYLE[block.block_fn]
  patch = make(_position(block))
  live = block.index in used
  patch.set_facecolor(face if live else UNUSED_FACE)
  patch.set_edgecolor('black' if endpoint else (face if live else UNUSED_EDGE))
  patch.set_linewidth(3.0 if endpoint else 1.0)
  patch.set_zorder(3)
  ax.add_patch(patch)
  x, y = _position(block)
  ax.text(x, y, str(block.index), ha='center', va='center', fontsize=8,
          color='white' if live else '#777777', zorder=4, fontweight='bold')
  ax.text(x, y - RADIUS - 0.08, str(block.out_channels), ha='center',
          va='top', fontsize=6, color='#555555' if live else '#aaaaaa',
          zorder=4)
  if block.is_output:
    label = f'P{block.level}' if endpoint else f'P{block.level} (unused)'
    ax.text(x, y + RADIUS + 0.08, label, ha='center', va='bottom',
            fontsize=9, fontweight='bold',
            color='black' if endpoint else '#999999', zorder=4)
  return patch


def _draw_edge(ax, source, target, patches, merge, live):
  (x0, y0), (x1, _) = _position(source), _position(target)
  span = x1 - x0
  # Neighbours get straight arrows; long edges bow (by at most BOW) away
  # from the blocks in between: down for edges that go down or stay level.
  bow = 0.0 if span <= 1.7 else min(0.25, 2 * BOW / span)
  rad = bow if target.level <= source.level else -bow
  color = (MERGE_COLOR if merge else INPUT_COLOR) if live else UNUSED_EDGE
  ax.add_patch(FancyArrowPatch(
      patchA=patches[source.index], patchB=patches[target.index],
      posA=(x0, y0), posB=_position(target), arrowstyle='-|>',
      mutation_scale=10, connectionstyle=f'arc3,rad={rad}', color=color,
      linewidth=1.6 if merge else 0.9, linestyle='--' if merge else '-',
      alpha=0.9 if live else 0.6, zorder=2))


def _legend(ax, family, any_unused):
  fns = specs_lib.BLOCK_TYPES[family]
  handles = [Line2D([], [], linestyle='', marker=LEGEND_MARKERS[fn],
                    markersize=10, markerfacecolor=STYLE[fn][1],
                    markeredgecolor=STYLE[fn][1], label=STYLE[fn][0])
             for fn in fns]
  handles += [
      Line2D([], [], linestyle='', marker='o', markersize=10,
             markerfacecolor='white', markeredgecolor='black',
             markeredgewidth=3, label='output block (P<level>)'),
      Line2D([], [], color=INPUT_COLOR, label='resampled input'),
      Line2D([], [], color=MERGE_COLOR, linestyle='--', linewidth=1.6,
             label='output merge'),
  ]
  if any_unused:
    handles.append(Line2D([], [], linestyle='', marker='o', markersize=10,
                          markerfacecolor=UNUSED_FACE,
                          markeredgecolor=UNUSED_EDGE,
                          label='feeds no output (not built)'))
  ax.legend(handles=handles, loc='upper center', bbox_to_anchor=(0.5, -0.04),
            ncol=len(handles), frameon=False, fontsize=9, handlelength=2.2)


def _subtitle(plan):
  s = plan.scaling
  text = (f'levels {plan.min_level}-{plan.max_level}, filter scale '
          f'{s.filter_size_scale}, block repeats {s.block_repeats}, '
          f'endpoints {s.endpoints_num_filters} ch')
  if plan.family == specs_lib.SPINENET:
    text += f', resample alpha {s.resample_alpha}'
  return text + '; numbers: block index / output channels'


def draw_architecture(specs_or_model_id, path, min_level=3, max_level=7,
                      scaling=None, title=None):
  """Writes a PNG of the scale-permuted network and returns `path`.

  Args:
    specs_or_model_id: a model id ('49', 'mobile-49', ...), a path to a YAML
      block-spec file, or a list of BlockSpecs / 4-tuples / dicts.
    path: where to write the PNG.
    min_level, max_level: the output levels.
    scaling: a `Scaling`, a dict of its fields or a model id (as in
      `build_backbone`).
    title: the figure title; defaults to the model id or file name.
  """
  block_specs, scaling = resolve_block_specs(specs_or_model_id, scaling)[:2]
  plan = specs_lib.make_plan(block_specs, scaling, min_level, max_level)
  title = title or _title(specs_or_model_id)
  used = plan.used_blocks()
  endpoints = {b.index for b in plan.endpoint_blocks().values()}
  levels = [b.level for b in plan.blocks]
  width = _position(plan.blocks[-1])[0] + 1.5
  height = max(levels) - min(levels) + 1.6
  fig = Figure(figsize=(max(8.0, 0.75 * width + 1.5), 0.75 * height + 2.2),
               dpi=110)
  ax = fig.add_subplot()
  patches = {b.index: _draw_block(ax, b, used, b.index in endpoints)
             for b in plan.blocks}
  for block in plan.blocks:
    live = block.index in used
    for p in block.parents:
      _draw_edge(ax, plan.blocks[p], block, patches, False, live)
    for m in block.merged:
      _draw_edge(ax, plan.blocks[m], block, patches, True, live)
  stems = [_position(b)[0] for b in plan.blocks if _in_stem(b)]
  ax.axvspan(stems[0] - 0.5, stems[-1] + 0.5, color='#f3f3f3', zorder=0)
  ax.text((stems[0] + stems[-1]) / 2, max(levels) + 0.5, 'stem',
          ha='center', va='center', fontsize=9, color='#777777')
  ax.set_xlim(-0.8, width - 0.7)
  ax.set_ylim(min(levels) - 1.0, max(levels) + 0.8)
  ax.set_aspect('equal')
  ax.set_yticks(range(min(levels), max(levels) + 1))
  ax.set_yticklabels([f'L{lv}  (1/{2 ** lv})'
                      for lv in range(min(levels), max(levels) + 1)])
  ax.set_xticks([])
  ax.set_xlabel('build order \u2192', fontsize=9)
  ax.grid(axis='y', color='#eeeeee', zorder=0)
  for side in ('top', 'right', 'bottom'):
    ax.spines[side].set_visible(False)
  ax.set_title(f'{title}\n', fontsize=13, fontweight='bold')
  ax.text(0.5, 1.01, _subtitle(plan), transform=ax.transAxes, ha='center',
          va='bottom', fontsize=8, color='#555555')
  _legend(ax, plan.family, len(used) < len(plan.blocks))
  fig.tight_layout()
  directory = os.path.dirname(os.fspath(path))
  if directory:
    os.makedirs(directory, exist_ok=True)
  fig.savefig(path, format='png')
  return path
