#!/usr/bin/env bash
# A stand-in for dockerd's API, one HTTP exchange per run (socat forks one
# per connection): just enough of GET /networks/NAME for the CLI's tests.
read -r _ path _
while read -r line && [ "${line%$'\r'}" != "" ]; do :; done
reply() {  # STATUS BODY
	printf 'HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' \
		"$1" "${#2}" "$2"
}
case $path in
*/networks/bridge)
	reply "200 OK" '{"Name":"bridge","Id":"f00dfeedf00dfeedf00dfeed","Driver":"bridge","Options":{"com.docker.network.bridge.name":"br0"}}' ;;
*/networks/mynet | */networks/0123456789abcdef)
	reply "200 OK" '{"Name":"mynet","Id":"0123456789abcdef0123","Driver":"bridge","Options":{}}' ;;
*/networks/swarmnet)
	reply "200 OK" '{"Name":"swarmnet","Id":"aaaaaaaaaaaaaaaa","Driver":"overlay","Options":{}}' ;;
*)
	reply "404 Not Found" "{\"message\":\"network ${path##*/} not found\"}" ;;
esac
