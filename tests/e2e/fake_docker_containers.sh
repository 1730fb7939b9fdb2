#!/usr/bin/env bash
# A stand-in for dockerd's API (socat forks one run per connection): GET
# /containers/json with one running container, "web-1", at the test's
# container addresses (tests/lib.sh's CTR and CTR6), for trace's names.
read -r _ path _
while read -r line && [ "${line%$'\r'}" != "" ]; do :; done
reply() {  # STATUS BODY
	printf 'HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' \
		"$1" "${#2}" "$2"
}
case $path in
*/containers/json)
	reply "200 OK" '[{"Id":"0123456789ab","Names":["/web-1"],"NetworkSettings":{"Networks":{"br0net":{"IPAddress":"10.201.0.2","GlobalIPv6Address":"fd42:201::2"},"odd":{"IPAddress":null,"GlobalIPv6Address":7}}}},{"Id":"ffff","Names":null}]' ;;
*)
	reply "404 Not Found" '{"message":"not here"}' ;;
esac
