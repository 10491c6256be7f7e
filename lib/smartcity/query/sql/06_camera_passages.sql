-- Traffic cameras: how many vehicles each one saw, how fast they went past, and when.
SELECT
    cameraid AS camera,
    arbitrary(road) AS road,
    count(*) AS passages,
    round(avg(speed), 1) AS avg_speed_kmh,
    min("timestamp") AS first_seen,
    max("timestamp") AS last_seen
FROM smartcity.traffic_data
GROUP BY cameraid
ORDER BY first_seen, camera
