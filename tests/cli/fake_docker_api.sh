#!/usr/bin/env bash
# A stand-in for dockerd's API, one HTTP exchange per run (socat forks one
# per connection): just enough of GET /networks/NAME for the CLI's tests.
read -r _ path _
while read -r line && [ "${line%$'\r'}" != "" ]; do :; done
reply() {  # STATUS BODY
	printf 'HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' \
		"$1" "${#2}" "$2"
}
# With DH_FAKE_DOCKER_DIR set, a Docker whose state a test changes: files
# there answer GET /containers/NAME/json (containers/NAME; 404 if absent
# but listed in gone/), GET /containers/json (list) and GET /events, which
# streams (chunked, as dockerd does) each line appended to events after the
# request came, with a blank line every second (which also ends the
# stream once the client went: the write fails).
dir=${DH_FAKE_DOCKER_DIR:-}
if [ -n "$dir" ]; then
	case $path in
	/events*)
		export LC_ALL=C
		printf 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n' || exit 0
		seen=$(cat "$dir/events" 2>/dev/null | wc -l)
		for _ in $(seq 600); do
			total=$(cat "$dir/events" 2>/dev/null | wc -l)
			if [ "$total" -gt "$seen" ]; then
				sed -n "$((seen + 1)),${total}p" "$dir/events" | while IFS= read -r line; do
					printf '%x\r\n%s\n\r\n' $((${#line} + 1)) "$line" || exit 1
				done || exit 0
				seen=$total
			fi
			printf '1\r\n\n\r\n' || exit 0
			sleep 0.2
		done
		exit 0 ;;
	*/containers/json*)
		body=$(cat "$dir/list" 2>/dev/null || echo '[]')
		printf 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' \
			"${#body}" "$body"
		exit 0 ;;
	*/containers/*/json)
		name=${path%/json}
		name=${name##*/}
		if [ -e "$dir/containers/$name" ]; then
			body=$(cat "$dir/containers/$name")
			printf 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' \
				"${#body}" "$body"
			exit 0
		fi
		if [ -e "$dir/gone/$name" ]; then
			body="{\"message\":\"No such container: $name\"}"
			printf 'HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' \
				"${#body}" "$body"
			exit 0
		fi ;;
	esac
fi
case $path in
*/networks/bridge)
	reply "200 OK" '{"Name":"bridge","Id":"f00dfeedf00dfeedf00dfeed","Driver":"bridge","Options":{"com.docker.network.bridge.name":"br0"}}' ;;
*/networks/mynet | */networks/0123456789abcdef)
	reply "200 OK" '{"Name":"mynet","Id":"0123456789abcdef0123","Driver":"bridge","Options":{}}' ;;
# Answers with null, missing and wrong-typed members: outside input the
# CLI must neither crash on nor take a truncated or invalid name from.
*/networks/nullopts)
	reply "200 OK" '{"Name":null,"Id":"abcdefabcdef0123","Driver":"bridge","Options":null,"IPAM":null,"Containers":null}' ;;
*/networks/nullname)
	reply "200 OK" '{"Name":"nullname","Id":"abcdefabcdef0123","Driver":"bridge","Options":{"com.docker.network.bridge.name":null},"IPAM":{"Config":null}}' ;;
*/networks/nulldriver)
	reply "200 OK" '{"Name":"nulldriver","Id":"abcdefabcdef0123","Driver":null,"Options":{}}' ;;
*/networks/nullid)
	reply "200 OK" '{"Name":"nullid","Id":null,"Driver":"bridge","Options":{}}' ;;
*/networks/wrongtypes)
	reply "200 OK" '{"Name":7,"Id":["abcdefabcdef0123"],"Driver":"bridge","Options":"x","IPAM":{"Config":{}}}' ;;
*/networks/badname)
	reply "200 OK" '{"Name":"badname","Id":"abcdefabcdef0123","Driver":"bridge","Options":{"com.docker.network.bridge.name":"a-bridge-name-too-long\nx"}}' ;;
*/networks/nulmsg)
	reply "500 Internal Server Error" '{"message":null}' ;;
*/networks/array)
	reply "200 OK" '[{"Driver":"bridge"}]' ;;
# Containers for stats --by-source's names: "web" has the address of the
# e2e tests' second container; the others have what must be skipped.
*/containers/json)
	reply "200 OK" '[{"Id":"c0ffee","Names":["/web"],"NetworkSettings":{"Networks":{"bridge":{"IPAddress":"10.201.0.3","GlobalIPv6Address":""}}}},{"Id":"bad1","Names":null,"NetworkSettings":{"Networks":{"bridge":{"IPAddress":"10.201.0.2"}}}},{"Id":"bad2","Names":["/nonet"],"NetworkSettings":{"Networks":null}},{"Id":"bad3","Names":["/weird"],"NetworkSettings":{"Networks":{"x":{"IPAddress":7}}}}]' ;;
*/networks/swarmnet)
	reply "200 OK" '{"Name":"swarmnet","Id":"aaaaaaaaaaaaaaaa","Driver":"overlay","Options":{}}' ;;
# Allow-list sources (port add --from): a container on two networks, one
# stopped (no address), one with null members; a network's subnets.
*/containers/web/json | */containers/0fedcba987654321/json)
	reply "200 OK" '{"Id":"0fedcba9876543210fedcba987654321","Name":"/web","State":{"Running":true},"NetworkSettings":{"Networks":{"bridge":{"IPAddress":"10.201.0.2","IPPrefixLen":24,"GlobalIPv6Address":"fd42:201::2","GlobalIPv6PrefixLen":64},"other":{"IPAddress":"10.209.0.5","IPPrefixLen":24,"GlobalIPv6Address":""}}}}' ;;
*/containers/stopped/json)
	reply "200 OK" '{"Id":"5555555555555555","Name":"/stopped","NetworkSettings":{"Networks":{"bridge":{"IPAddress":"","GlobalIPv6Address":""}}}}' ;;
*/containers/nullnets/json)
	reply "200 OK" '{"Id":"6666666666666666","Name":"/nullnets","NetworkSettings":{"Networks":null}}' ;;
*/containers/badaddr/json)
	reply "200 OK" '{"Id":"7777777777777777","Name":"/badaddr","NetworkSettings":{"Networks":{"bridge":{"IPAddress":"10.201.0.300","GlobalIPv6Address":7},"b":{"IPAddress":"10.201.0.4"}}}}' ;;
# The network list (bash completion's names; filters={"driver":...} as sent,
# not applied).
*/networks | */networks\?*)
	reply "200 OK" '[{"Name":"bridge","Id":"f00dfeedf00dfeedf00dfeed","Driver":"bridge","Options":{"com.docker.network.bridge.name":"br0"}},{"Name":"mynet","Id":"0123456789abcdef0123","Driver":"bridge","Options":{}}]' ;;
*/networks/appnet)
	reply "200 OK" '{"Name":"appnet","Id":"abababababababab","Driver":"bridge","Options":{},"IPAM":{"Config":[{"Subnet":"10.201.0.0/24","Gateway":"10.201.0.1"},{"Subnet":"fd42:201::/64"}]}}' ;;
*)
	reply "404 Not Found" "{\"message\":\"network ${path##*/} not found\"}" ;;
esac
