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
*)
	reply "404 Not Found" "{\"message\":\"network ${path##*/} not found\"}" ;;
esac
