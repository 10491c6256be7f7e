-- What each weather station saw while the fleet was on the road: the front's rain passing by.
SELECT
    stationname AS station,
    count(*) AS reports,
    round(min(temperature), 1) AS min_temp_c,
    round(max(temperature), 1) AS max_temp_c,
    round(max(precipitation), 1) AS max_rain_mm_h,
    count_if(weathercondition = 'Rain') AS rainy_reports,
    min(CASE WHEN weathercondition = 'Rain' THEN "timestamp" END) AS rain_from
FROM smartcity.weather_data
GROUP BY stationname
ORDER BY rain_from NULLS LAST, station
