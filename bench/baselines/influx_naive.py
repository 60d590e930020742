"""Naive InfluxDB writer: N points a second through influxdb-client's batching write API (its own
retries, in memory), the way a user writes a logger in a few lines.

    python -m bench.baselines.influx_naive --url U --racks 20 --fields 253 --out o.json
"""

import argparse
import json
import signal
import time

from influxdb_client import InfluxDBClient, Point, WriteOptions

ap = argparse.ArgumentParser()
ap.add_argument("--url", required=True)
ap.add_argument("--racks", type=int, default=20)
ap.add_argument("--fields", type=int, default=250)
ap.add_argument("--out", required=True)
args = ap.parse_args()

client = InfluxDBClient(url=args.url, token="x", org="bench")
errors = []
write_api = client.write_api(
    write_options=WriteOptions(batch_size=5000, flush_interval=1000),
    error_callback=lambda conf, data, exc: errors.append(str(exc)[:200]),
)

running = True


def stop(*_):
    global running
    running = False


signal.signal(signal.SIGTERM, stop)
written = 0
start = time.time()
k = 0
while running:
    now = time.time_ns()
    for r in range(args.racks):
        for f in range(args.fields):
            point = Point("naive").tag("rack", f"rack-{r:02d}").tag("cell", str(f)).field("value", 3.3 + f * 1e-4)
            write_api.write(bucket="bms", record=point.time(now))
            written += 1
    k += 1
    time.sleep(max(0.0, start + k - time.time()))

write_api.close()
client.close()
with open(args.out, "w") as f:
    json.dump({"written": written, "errors": len(errors), "first_errors": errors[:3]}, f)
