-- Where the fleet was fast and where it crawled: speed on each road of each route.
SELECT
    route,
    road,
    count(*) AS fixes,
    round(avg(speed), 1) AS avg_speed_kmh,
    round(max(speed), 1) AS max_speed_kmh,
    round(100.0 * count_if(speed < 30) / count(*), 1) AS pct_below_30_kmh
FROM smartcity.vehicle_data
GROUP BY route, road
HAVING count(*) >= 20
ORDER BY route, avg_speed_kmh
