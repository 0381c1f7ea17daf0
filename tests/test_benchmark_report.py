"""benchmarks.benchmark (scripts/benchmark.py): the summary
table's ratios point the right way, and a short real run writes the
markdown and JSON reports."""
import json
import os
import subprocess
import sys

from benchmarks import benchmark, export_speed, report

SCRIPTS = os.path.join(os.path.dirname(__file__), '..', 'scripts')


def test_summary_ratio_is_above_one_when_ours_is_better():
  faster = benchmark.summary_row('latency', 'ms', 50.0, 100.0, 'lower')
  more = benchmark.summary_row('training', 'images/s', 30.0, 20.0, 'higher')
  same = benchmark.summary_row('params', 'params', 10.0, 10.0, 'equal')
  assert (faster['ratio'], more['ratio'], same['ratio']) == (2.0, 1.5, 1.0)
  flops = benchmark.summary_row('conv', 'conv GFLOPs', 4.0, 5.0, 'lower')
  table = benchmark.summary_table([faster, more, same, flops])
  # Each row says which way its ratio is taken (the old legend called
  # every count ours / MG while FLOPs rows were MG / ours).
  assert '| latency | ms | 50.00 | 100.00 | 2.00 | MG / ours |' in table
  assert '| training | images/s | 30.00 | 20.00 | 1.50 | ours / MG |' in table
  assert '| params | params | 10 | 10 | 1.0000 | ours / MG |' in table
  assert '| conv | conv GFLOPs | 4.00 | 5.00 | 1.25 | MG / ours |' in table


def test_every_table_names_the_cpu_and_its_extensions(tmp_path):
  cpuinfo = tmp_path / 'cpuinfo'
  cpuinfo.write_text('processor\t: 0\nmodel name\t: AMD EPYC 9B14\n'
                     'flags\t\t: fpu sse avx2 fma avx512f avx512_bf16\n\n'
                     'processor\t: 1\nmodel name\t: other\n')
  assert report.cpu(str(cpuinfo)) == {
      'model': 'AMD EPYC 9B14',
      'extensions': ['AVX2', 'FMA', 'AVX-512F', 'AVX-512 BF16']}
  assert report.machine_line(str(cpuinfo)).endswith(
      'cores of AMD EPYC 9B14 (AVX2, FMA, AVX-512F, AVX-512 BF16, no AMX)')
  assert report.machine_line() in benchmark.summary_table([])
  assert report.machine_line() in benchmark.latency_table([])
  assert report.cpu() == report.environment()['cpu']


def test_export_summary_compares_inference_with_batched_nms():
  mg, batched = export_speed.MG, export_speed.MG_BATCHED
  def row(scope, name, median_ms, batch=1):
    return {'scope': scope, 'name': name, 'median_ms': median_ms,
            'batch': batch, 'images_per_s': 1000 * batch / median_ms}

  rows = [row('network', mg, 90.0),
          row('network', 'ours, folded float32', 45.0),
          row('inference', mg, 600.0), row('inference', batched, 100.0),
          row('inference', 'ours, SavedModel float32', 80.0),
          row('batch 8', batched, 800.0, 8),
          row('batch 8', 'ours, SavedModel float32', 400.0, 8)]
  summary = benchmark.export_summary(rows)
  assert [(r['model_garden'], r['ratio'], r['unit']) for r in summary] == [
      (90.0, 2.0, 'ms'), (100.0, 1.25, 'ms'), (10.0, 2.0, 'images/s')]


def test_short_run_writes_markdown_and_json(tmp_path):
  md, js = tmp_path / 'bench.md', tmp_path / 'bench.json'
  result = subprocess.run(
      [sys.executable, os.path.join(SCRIPTS, 'benchmark.py'), '--quick',
       '--sections=backbone', '--variants=mobile-49XS',
       '--latency_variants=mobile-49XS', f'--output_md={md}',
       f'--output_json={js}'],
      capture_output=True, text=True, timeout=600,
      env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'})
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(js.read_text())
  assert report['environment']['tensorflow']
  params = [r for r in report['summary'] if r['unit'] == 'params']
  assert params and all(r['ratio'] == 1.0 for r in params)  # same network
  assert '| SpineNet-mobile-49XS params at 384 | params |' in md.read_text()
