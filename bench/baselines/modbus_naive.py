"""Naive Modbus poller: one read per point per device in a loop, one MQTT publish per device cycle.

python -m bench.baselines.modbus_naive --ports 15020,15021 --units 10 --points 1000 --mqtt-port M --out o.json
"""

import argparse
import json
import signal
import time

import paho.mqtt.client as mqtt
from pymodbus.client import ModbusTcpClient

ap = argparse.ArgumentParser()
ap.add_argument("--ports", required=True)
ap.add_argument("--units", type=int, default=10)
ap.add_argument("--points", type=int, default=1000)
ap.add_argument("--voltages", type=int, default=800)
ap.add_argument("--mqtt-port", type=int, required=True)
ap.add_argument("--out", required=True)
args = ap.parse_args()

clients = [ModbusTcpClient("127.0.0.1", port=int(p)) for p in args.ports.split(",")]
for c in clients:
    c.connect()
mqttc = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="naive-modbus")
mqttc.connect("127.0.0.1", args.mqtt_port)
mqttc.loop_start()

running = True


def stop(*_):
    global running
    running = False


signal.signal(signal.SIGTERM, stop)
requests = points = cycles = 0
cycle_starts = []
while running:
    start = time.time()
    cycle_starts.append(start)
    for e, client in enumerate(clients):
        for unit in range(1, args.units + 1):
            values = {"ts": time.time_ns()}  # when the device's first point was asked for
            for addr in range(args.points):
                if not running:
                    break
                rr = client.read_holding_registers(addr, count=1, device_id=unit)
                requests += 1
                if rr.isError():
                    continue
                scale = 0.001 if addr < args.voltages else 0.1
                values[f"p{addr}"] = rr.registers[0] * scale
                points += 1
            mqttc.publish(f"naive/rack-{e}-{unit}", json.dumps(values), qos=0)
    cycles += running
    time.sleep(max(0.0, 1.0 - (time.time() - start)))

mqttc.loop_stop()
with open(args.out, "w") as f:
    json.dump({"requests": requests, "points": points, "cycles": cycles, "cycle_starts": cycle_starts}, f)
