"""Naive CAN → MQTT + InfluxDB bridge: recv, decode, one QoS 0 publish per frame, batching Influx writes.

python -m bench.baselines.can_naive --port P --dbc bench/data/bench.dbc --mqtt-port M --influx-url U --out o.json
"""

import argparse
import json
import signal
import time

import cantools
import paho.mqtt.client as mqtt
from influxdb_client import InfluxDBClient, Point, WriteOptions

from bench.canbus import loopback_bus

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--dbc", required=True)
ap.add_argument("--mqtt-port", type=int, required=True)
ap.add_argument("--influx-url", required=True)
ap.add_argument("--out", required=True)
args = ap.parse_args()

db = cantools.database.load_file(args.dbc)
bus = loopback_bus(args.port)
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="naive-can")
client.connect("127.0.0.1", args.mqtt_port)
client.loop_start()
influx = InfluxDBClient(url=args.influx_url, token="x", org="bench")
write_api = influx.write_api(write_options=WriteOptions(batch_size=5000, flush_interval=1000))

running = True


def stop(*_):
    global running
    running = False


signal.signal(signal.SIGTERM, stop)
frames = samples = published = 0
while running:
    msg = bus.recv(timeout=0.2)
    if msg is None:
        continue
    try:
        decoded = db.decode_message(msg.arbitration_id, msg.data)
    except (KeyError, ValueError):
        continue
    frames += 1
    samples += len(decoded)
    name = db.get_message_by_frame_id(msg.arbitration_id).name
    info = client.publish(f"naive/rack-01/{name}", json.dumps(decoded), qos=0)
    published += info.rc == mqtt.MQTT_ERR_SUCCESS
    point = Point(name).tag("rack", "rack-01").time(time.time_ns())
    for key, value in decoded.items():
        point = point.field(key, float(value))
    write_api.write(bucket="bms", record=point)

write_api.close()
influx.close()
client.loop_stop()
bus.shutdown()
with open(args.out, "w") as f:
    json.dump({"frames": frames, "samples": samples, "published": published}, f)
