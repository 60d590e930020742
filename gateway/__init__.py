"""bms-gateway: reads battery management systems over Modbus TCP and CAN, writes InfluxDB and MQTT."""
