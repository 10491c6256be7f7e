-- The fleet as the warehouse sees it: one row per vehicle and its trip.
SELECT
    deviceid AS vehicle,
    MIN(make) AS make,
    MIN(model) AS model,
    MIN(fueltype) AS fuel,
    COUNT(*) AS fixes,
    MIN("timestamp") AS departed,
    MAX("timestamp") AS arrived,
    ROUND(((EXTRACT(EPOCH FROM MAX("timestamp")) - EXTRACT(EPOCH FROM MIN("timestamp"))) / 60.0)::numeric, 0) AS minutes,
    ROUND(AVG(speed)::numeric, 1) AS avg_speed_kmh
FROM smartcity.vehicle_data
GROUP BY deviceid
ORDER BY vehicle;
