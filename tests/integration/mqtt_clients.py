"""
mqtt_clients.py - MQTT with paho-mqtt 1.6: Client (a connected client with its own network
thread), v5 properties, $SYS counters (SysCounters, heap_current) and a steady QoS 1 load
(Load, whose records records.sequence_report checks).
"""

import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from header import SYS_PREFIX
from paths import SLOW
from procs import HarnessError, unique, wait_for

V311 = mqtt.MQTTv311
V5 = mqtt.MQTTv5


class Client:
    """A connected paho client running its own network thread.

    max_inflight stays at 20, mosquitto's receive maximum: a v3.1.1 client with more QoS 2
    messages in flight gets PUBREC 0x97 and is disconnected.

    websockets=True: MQTT over WebSockets (paho's transport "websockets", path /mqtt, the
    path MQTT.js and browsers use) to a broker's or HAProxy's ws_port."""

    def __init__(self, port, client_id=None, protocol=V311, username=None, password=None,
                 host="127.0.0.1", timeout=10.0, on_message=None, max_inflight=20, clean=True,
                 websockets=False):
        self.client_id = client_id or unique("c")
        self.protocol = protocol
        self.username = username
        self.websockets = websockets
        kwargs = {"client_id": self.client_id, "protocol": protocol}
        if protocol != V5:
            kwargs["clean_session"] = clean
        if websockets:
            kwargs["transport"] = "websockets"
        self.c = mqtt.Client(**kwargs)
        if websockets:
            self.c.ws_set_options(path="/mqtt")
        self.c.max_inflight_messages_set(max_inflight)
        self.c.max_queued_messages_set(0)
        if username is not None:
            self.c.username_pw_set(username, password)
        self._connected = threading.Event()
        self._rc = None
        self.c.on_connect = self._on_connect
        if on_message:
            self.c.on_message = on_message
        if protocol == V5 and not clean:
            from paho.mqtt.properties import Properties
            from paho.mqtt.packettypes import PacketTypes
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 600
            self.c.connect(host, port, keepalive=60, clean_start=False, properties=props)
        else:
            self.c.connect(host, port, keepalive=60)
        self.c.loop_start()
        if not self._connected.wait(timeout * SLOW):
            self.c.loop_stop()
            raise HarnessError(f"MQTT client {self.client_id} not connected to "
                               f"{host}:{port} within {timeout} s")
        if self._rc != 0:
            self.c.loop_stop()
            raise HarnessError(f"MQTT client {self.client_id} refused: rc={self._rc}")

    def _on_connect(self, client, userdata, flags, rc, properties=None):
        self._rc = rc if isinstance(rc, int) else rc.value
        self._connected.set()

    def publish(self, topic, payload, qos=0, retain=False, properties=None):
        """Queues a PUBLISH; returns paho's MQTTMessageInfo."""
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise HarnessError(f"{self.client_id}: publish to {topic!r} failed: rc={info.rc}")
        return info

    def publish_wait(self, topic, payload, qos=1, retain=False, properties=None, timeout=10.0):
        info = self.publish(topic, payload, qos, retain, properties)
        wait_published([info], timeout)
        return info

    def subscribe(self, topic, qos=0, timeout=10.0):
        done = threading.Event()
        self.c.on_subscribe = lambda *a, **k: done.set()
        self.c.subscribe(topic, qos)
        if not done.wait(timeout * SLOW):
            raise HarnessError(f"{self.client_id}: no SUBACK for {topic!r} in {timeout} s")

    def close(self):
        try:
            self.c.disconnect()
        finally:
            self.c.loop_stop()


def wait_published(infos, timeout):
    """Waits until every MQTTMessageInfo is published (QoS0 written, QoS1 acked, QoS2 done)."""
    deadline = time.monotonic() + timeout * SLOW
    for info in infos:
        while not info.is_published():
            if time.monotonic() > deadline:
                pending = sum(1 for i in infos if not i.is_published())
                raise HarnessError(f"{pending} of {len(infos)} PUBLISHes not completed "
                                   f"within {timeout} s")
            time.sleep(0.005)


def v5_properties(user=(), content_type=None, response_topic=None, correlation_data=None,
                  payload_format=None):
    props = Properties(PacketTypes.PUBLISH)
    if user:
        props.UserProperty = list(user)
    if content_type is not None:
        props.ContentType = content_type
    if response_topic is not None:
        props.ResponseTopic = response_topic
    if correlation_data is not None:
        props.CorrelationData = correlation_data
    if payload_format is not None:
        props.PayloadFormatIndicator = payload_format
    return props


def heap_current(port, timeout=10.0):
    """mosquitto's own $SYS/broker/heap/current (bytes), the next time it is published
    after a subscription (sys_interval 1 makes that within a second)."""
    seen = []
    c = Client(port, unique("heap"), V5, on_message=lambda cl, u, m: seen.append(int(m.payload)))
    try:
        c.subscribe("$SYS/broker/heap/current")
        wait_for(lambda: len(seen) >= 2, timeout * SLOW, interval=0.05,
                 what="two $SYS/broker/heap/current updates")
        return seen[-1]
    finally:
        c.close()


class SysCounters:
    """Subscribes to $SYS/broker/kafka/# and keeps the latest value of every counter,
    by its name under the prefix ("delivered", "routes/<name>/matched", ...)."""

    def __init__(self, port):
        self.values = {}
        self.client = Client(port, unique("sys"), V311, on_message=self._on_message)
        self.client.subscribe(SYS_PREFIX + "/#")

    def _on_message(self, client, userdata, msg):
        if msg.topic.startswith(SYS_PREFIX + "/"):
            self.values[msg.topic[len(SYS_PREFIX) + 1:]] = msg.payload.decode("utf-8", "replace")

    def wait_for(self, expect, timeout=10.0):
        """Waits until every counter of expect ({name: int}) has that value; returns the
        values seen for those names (the caller asserts, so a mismatch shows numbers)."""
        try:
            wait_for(lambda: all(self.values.get(k) == str(v) for k, v in expect.items()),
                     timeout * SLOW, interval=0.1, what=f"$SYS counters {expect}")
        except HarnessError:
            pass
        return {k: int(self.values[k]) if self.values.get(k, "").isdigit() else self.values.get(k)
                for k in expect}

    def close(self):
        self.client.close()


# ---- steady load and what reached Kafka of it -------------------------------------------

class Load:
    """
    Steady QoS 1 load: n_clients MQTT clients, one thread each, together about `rate`
    messages per second. Client <cid> publishes to "<topic_prefix>/<cid>" the payloads
    "<cid>:0", "<cid>:1", ... (its own sequence). start(), then stop(): stop() waits for
    every PUBACK unless the broker went away (wait_acks=False). clean=False: persistent
    sessions (a v3.1.1 clean session false, a v5 session expiry). A client whose connection
    breaks stops publishing (stop_under_load SIGTERMs mosquitto under it); anything else
    going wrong is in .errors. websockets=True: the clients connect over WebSockets (port is
    then a ws_port).
    """

    def __init__(self, port, n_clients, rate, topic_prefix, prefix="load", protocol=V311,
                 clean=True, websockets=False):
        self.topic_prefix = topic_prefix
        self.interval = n_clients / float(rate)
        self.clients = [Client(port, unique(f"{prefix}{i}"), protocol, clean=clean,
                               websockets=websockets)
                        for i in range(n_clients)]
        self.infos = {c.client_id: [] for c in self.clients}
        self.errors = []
        self.disconnected = set()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(c,), daemon=True)
                         for c in self.clients]
        self.started_at = self.stopped_at = None

    def start(self):
        self.started_at = time.monotonic()
        for t in self._threads:
            t.start()
        return self

    def _run(self, client):
        infos = self.infos[client.client_id]
        topic = f"{self.topic_prefix}/{client.client_id}"
        due = time.monotonic()
        n = 0
        try:
            while not self._stop.is_set():
                info = client.c.publish(topic, f"{client.client_id}:{n}".encode(), qos=1)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    self.disconnected.add(client.client_id)
                    return
                infos.append(info)
                n += 1
                due += self.interval
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                elif delay < -1.0:
                    due = time.monotonic()  # behind by a second: do not burst to catch up
        except Exception as e:  # reported by stop()
            self.errors.append(f"{client.client_id}: {e!r}")

    def stop(self, wait_acks=True, timeout=60.0):
        """Stops publishing; returns {client id: messages published} (PUBACKed ones when
        wait_acks, which raises if some are not acknowledged within timeout)."""
        self._stop.set()
        for t in self._threads:
            t.join(10)
        self.stopped_at = time.monotonic()
        if any(t.is_alive() for t in self._threads):
            self.errors.append("a publisher thread did not stop within 10 s")
        if wait_acks:
            wait_published([i for infos in self.infos.values() for i in infos], timeout)
        for c in self.clients:
            try:
                c.close()
            except Exception:
                pass
        if wait_acks:
            return {cid: len(infos) for cid, infos in self.infos.items()}
        return {cid: sum(1 for i in infos if i.is_published())
                for cid, infos in self.infos.items()}

    def published(self):
        """How many messages were handed to the clients so far (all of them)."""
        return sum(len(infos) for infos in self.infos.values())
