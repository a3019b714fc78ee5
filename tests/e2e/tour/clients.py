"""The tour's clients (record_tour.sh): python3 clients.py HTTP_PORT HTTPS_PORT.

Two keep-alive connections with one request each (routes api and default), an unread 10 MB
download, a request the demo app answers after a minute, and a TLS connection with one request
on api; prints "ready", then holds them all for two minutes."""
import socket
import ssl
import sys
import time

http_port, https_port = int(sys.argv[1]), int(sys.argv[2])


def send(s, path):
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())


def read_response(s):
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    length = [l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")]
    while len(body) < int(length[0]):
        body += s.recv(65536)


held = []
for path in ("/api/ping", "/"):
    s = socket.create_connection(("127.0.0.1", http_port))
    send(s, path)
    read_response(s)
    held.append(s)
download = socket.socket()
download.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
download.connect(("127.0.0.1", http_port))
send(download, "/bytes?n=10000000")
slow = socket.create_connection(("127.0.0.1", http_port))
send(slow, "/slow?ms=60000")
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
secure = context.wrap_socket(socket.create_connection(("127.0.0.1", https_port)))
send(secure, "/api/ping")
read_response(secure)
held += [download, slow, secure]
print("ready", flush=True)
time.sleep(120)
