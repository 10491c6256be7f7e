-- Each vehicle's trip: when it left, when it arrived, how long it took and how fast it went.
SELECT
    deviceid AS vehicle,
    arbitrary(make) AS make,
    arbitrary(model) AS model,
    arbitrary(fueltype) AS fuel,
    min("timestamp") AS departed,
    max("timestamp") AS arrived,
    date_diff('minute', min("timestamp"), max("timestamp")) AS minutes,
    round(avg(speed), 1) AS avg_speed_kmh,
    round(max(speed), 1) AS max_speed_kmh
FROM smartcity.vehicle_data
GROUP BY deviceid
ORDER BY vehicle
