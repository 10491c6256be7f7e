-- Traffic cameras: how many vehicles each one saw, and when.
SELECT
    cameraid AS camera,
    count(*) AS passages,
    count(DISTINCT vehicleid) AS vehicles,
    min("timestamp") AS first_seen,
    max("timestamp") AS last_seen
FROM smartcity.traffic_data
GROUP BY cameraid
ORDER BY camera
